"""Protocol defaults that ``descbench`` shows in its help, in a module that imports nothing.

Building the parser (every command starts with it, ``descbench --help`` too) reads them from here, so it
does not load the protocol modules and, with them, torch and OpenCV; those modules import them from here.
"""

MAX_KEYPOINTS = 2000  # HPatches sequences: SIFT keypoints per image (docs/protocols.md §6.2)
