"""Work the console runs off its own event loop, on a daemon thread (`background.BackgroundLoop`): the
training engine (`engine`) and the demo's simulated market (`demo`).

Each runs with a pool of its own, so nothing it does (imports of ART, CPU-bound judging and training,
bulk writes) can stall the console's input loop. The console awaits their futures from named workers
and steers them with thread-safe calls. Like the data layer, they are doors to the core, and they
import its heavy modules inside the functions that use them: the console paints first.
"""
