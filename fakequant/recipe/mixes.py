"""The names of llama.cpp's stock mixes a recipe is set beside (:mod:`fakequant.recipe.stock` writes them). A module
of its own so that the command line can name them without importing what writes them."""

# the mixes llama-quantize offers that a Q4-class source is usually compared with, smallest first
STOCK_MIXES = ("Q2_K", "Q3_K_M", "Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0")
# with an importance matrix, also the i-quant mixes published beside them (IQ2_M and IQ3_M need one to be any good;
# llama-quantize refuses IQ2_M's iq2_xs/iq2_s tensors without one), smallest first by their nominal bits per weight
IMATRIX_MIXES = ("IQ2_M", "Q2_K", "IQ3_M", "Q3_K_M", "IQ4_XS", "Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0")
