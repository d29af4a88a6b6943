"""A simulated fleet of agent services that records its tasks in a ledger."""

from taskledger.demo.simulator import FleetConfig, FleetSimulator, FleetTotals

__all__ = ["FleetConfig", "FleetSimulator", "FleetTotals"]
