"""llama.cpp through llama-cpp-python: settings, model, perplexity, speed."""
