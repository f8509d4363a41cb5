"""The device simulator: fleets of simulated glasses and the bodies they stream."""

from .fleet import SimulatedDevice, make_fleet
from .profiles import PROFILES, Profile

__all__ = ["PROFILES", "Profile", "SimulatedDevice", "make_fleet"]
