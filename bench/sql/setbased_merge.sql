-- Shallow merge of jsonb objects in aggregate order: later keys win, as in
-- a Python dict update. jsonb_concat is the function behind the || operator.
create aggregate {merge}(jsonb) (
    sfunc = jsonb_concat,
    stype = jsonb,
    initcond = '{{}}'
)
