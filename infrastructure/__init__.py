"""PostgreSQL and Supabase: settings, connections, migrations, recorders, LISTEN."""
