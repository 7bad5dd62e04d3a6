/* The fixed header of a Kiln artifact. Shared by the compiler (writer) and
 * the runtime (reader). All integers are little-endian. */
#ifndef KILN_ARTIFACT_FORMAT_H
#define KILN_ARTIFACT_FORMAT_H

#include <stdint.h>

#define KILN_ARTIFACT_MAGIC "KILNART"  /* 7 chars + NUL = 8 bytes */
#define KILN_ARTIFACT_FORMAT_VERSION 3u
/* The first version whose files carry checksums (header, manifest and every
 * section); older files are refused. */
#define KILN_ARTIFACT_MIN_FORMAT_VERSION 3u
#define KILN_ARTIFACT_SECTION_ALIGNMENT 64u

typedef struct kiln_artifact_header {
  char magic[8];
  uint32_t format_version;
  uint32_t header_size;      /* sizeof(kiln_artifact_header) */
  uint64_t manifest_offset;
  uint64_t manifest_size;
  uint64_t file_size;
  uint64_t manifest_xxh3;    /* XXH3-64 of the manifest's bytes */
  uint8_t reserved[8];       /* zero */
  uint64_t header_xxh3;      /* XXH3-64 of the 56 bytes before this field */
} kiln_artifact_header;
/* Every later format version keeps magic, format_version, header_size and
 * header_xxh3 where they are (header_xxh3 at offset 56, over the bytes
 * before it): a runtime then tells a newer file from a damaged one. */

#ifdef __cplusplus
static_assert(sizeof(kiln_artifact_header) == 64, "header is 64 bytes");
static_assert(__builtin_offsetof(kiln_artifact_header, header_xxh3) == 56,
              "the header checksum is the header's last 8 bytes");
#endif

#endif /* KILN_ARTIFACT_FORMAT_H */
