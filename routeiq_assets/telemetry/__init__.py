"""Telemetry readers, the raw store, the simulator and the landing-folder scan."""
