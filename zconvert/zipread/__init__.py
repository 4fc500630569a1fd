"""Reading archives: ZIP and .npz central directories, members and their selection, .npy headers,
every inflate path (stored, deflate, Deflate64, threaded). May import core only."""
