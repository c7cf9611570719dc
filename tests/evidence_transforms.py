"""The photo transforms now live in sim.transforms (the simulator's re-users apply them too)."""
from sim.transforms import *  # noqa: F401,F403
from sim.transforms import TRANSFORMS, jpeg, low_texture  # noqa: F401
