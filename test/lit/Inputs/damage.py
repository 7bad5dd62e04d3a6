"""damage.py FILE OFFSET [SECTION]: flips bit 0 of the byte at OFFSET, counted
from the start of section SECTION (a name from `kiln inspect --json`) or of
the file. OFFSET may be negative: from the end of the section or file."""
import json
import subprocess
import sys

path, offset = sys.argv[1], int(sys.argv[2])
data = bytearray(open(path, "rb").read())
begin, end = 0, len(data)
if len(sys.argv) > 3:
    kiln = sys.argv[4] if len(sys.argv) > 4 else "kiln"
    info = json.loads(subprocess.check_output([kiln, "inspect", "--json", path]))
    section = next(s for s in info["sections"] if s["name"] == sys.argv[3])
    begin, end = section["offset"], section["offset"] + section["size"]
at = begin + offset if offset >= 0 else end + offset
data[at] ^= 1
open(path, "wb").write(data)
