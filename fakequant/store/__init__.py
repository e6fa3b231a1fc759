"""Files on disk: the atomic cache, the default assets, llama.cpp's reference tools."""
