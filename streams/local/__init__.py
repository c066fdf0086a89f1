"""The local stack behind `starcast run`: the embedded broker, the runner, the simulator."""
