"""Special token ids shared by every vocabulary, the model and decoding."""

PAD_ID = 0   # padding: invisible to attention, masked out of the loss
BOS_ID = 1   # starts every decoder input
EOS_ID = 2   # ends every target sequence
UNK_ID = 3   # a word the vocabulary does not have
NUM_SPECIAL = 4
