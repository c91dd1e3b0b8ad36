"""The TeamLeader: rules engine, planner, dispatcher, leases, recovery, cancellation."""
