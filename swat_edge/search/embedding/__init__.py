"""The universal MLP embedding (torch): the network family, the random-MLP generator, the autoencoder, its
training, storage of weights (safetensors + JSON) and evaluation; default/ holds the shipped weights.

decode turns decoder output into a soft network and hardens it into a SparseMLP, the bridge back to the
torch-free side. May import: errors, files, model, data. Never imports the rest of search (the search uses
the embedding, not the other way round).
"""
