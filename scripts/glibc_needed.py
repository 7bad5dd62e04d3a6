"""The glibc an ELF program needs: the newest GLIBC_2.x symbol version it
asks the dynamic loader for, read from the file itself (.gnu.version_r,
.gnu.version and .dynsym), so the answer follows the build, not a note.

    python3 scripts/glibc_needed.py build/bin/kiln-runner

prints the newest version and, per version above --above (default 2.28),
the symbols that need it. Standard library only.
"""
import argparse
import struct
import sys

SHT_DYNSYM, SHT_GNU_VERNEED, SHT_GNU_VERSYM = 11, 0x6FFFFFFE, 0x6FFFFFFF


def glibc_versions(path):
    """{"2.34": [symbol, ...], ...}: each GLIBC_2.x version `path` (a 64-bit
    little-endian ELF file) needs, with the dynamic symbols bound to it."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError(f"{path}: not a 64-bit little-endian ELF file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    # (type, offset, size, link, info) of each section header.
    sections = [struct.unpack_from("<4xI16xQQII", data, shoff + i * shentsize)
                for i in range(shnum)]
    by_type = {s[0]: s for s in sections}

    def string(table, offset):
        start = sections[table][1] + offset
        return data[start:data.index(b"\0", start)].decode()

    names = {}  # version index -> version name
    verneed = by_type.get(SHT_GNU_VERNEED)
    if verneed:
        entry = verneed[1]
        for _ in range(verneed[4]):  # sh_info: the number of Verneed entries
            _, count, _, aux, next_entry = struct.unpack_from("<HHIII", data, entry)
            at = entry + aux
            for _ in range(count):
                _, _, index, name, next_aux = struct.unpack_from("<IHHII", data, at)
                names[index] = string(verneed[3], name)
                at += next_aux
            entry += next_entry
    found = {name[len("GLIBC_"):]: [] for name in names.values()
             if name.startswith("GLIBC_2")}
    dynsym, versym = by_type.get(SHT_DYNSYM), by_type.get(SHT_GNU_VERSYM)
    if dynsym and versym:
        for i in range(dynsym[2] // 24):
            name, = struct.unpack_from("<I", data, dynsym[1] + i * 24)
            index, = struct.unpack_from("<H", data, versym[1] + i * 2)
            version = names.get(index & 0x7FFF, "")
            if version.startswith("GLIBC_2"):
                found[version[len("GLIBC_"):]].append(string(dynsym[3], name))
    return found


def version_key(version):
    return tuple(int(part) for part in version.split("."))


def newest(versions):
    """The newest of `versions` ("2.28"), or None when empty."""
    return max(versions, key=version_key, default=None)


def describe(path, above="2.28"):
    """One line: the glibc `path` needs, and the symbols that need more than
    `above`."""
    versions = glibc_versions(path)
    need = newest(versions)
    if need is None:
        return f"{path}: needs no versioned glibc symbol"
    line = f"{path}: needs glibc {need}"
    over = {v: s for v, s in versions.items()
            if version_key(v) > version_key(above)}
    if over:
        line += f" (over {above}: " + "; ".join(
            f"{v}: {', '.join(sorted(over[v])) or '-'}"
            for v in sorted(over, key=version_key)) + ")"
    return line


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("files", nargs="+")
    parser.add_argument("--above", default="2.28",
                        help="list the symbols that need more than this")
    args = parser.parse_args()
    for path in args.files:
        print(describe(path, args.above))


if __name__ == "__main__":
    sys.exit(main())
