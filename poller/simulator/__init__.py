"""An embedded FaceID simulator (aiohttp.web) for tests, demos and benchmarks."""
