/* The fixed header of a Kiln artifact. Shared by the compiler (writer) and
 * the runtime (reader). All integers are little-endian. */
#ifndef KILN_ARTIFACT_FORMAT_H
#define KILN_ARTIFACT_FORMAT_H

#include <stdint.h>

#define KILN_ARTIFACT_MAGIC "KILNART"  /* 7 chars + NUL = 8 bytes */
#define KILN_ARTIFACT_FORMAT_VERSION 2u
#define KILN_ARTIFACT_SECTION_ALIGNMENT 64u

typedef struct kiln_artifact_header {
  char magic[8];
  uint32_t format_version;
  uint32_t header_size;      /* sizeof(kiln_artifact_header) */
  uint64_t manifest_offset;
  uint64_t manifest_size;
  uint64_t file_size;
  uint8_t reserved[24];
} kiln_artifact_header;

#ifdef __cplusplus
static_assert(sizeof(kiln_artifact_header) == 64, "header is 64 bytes");
#endif

#endif /* KILN_ARTIFACT_FORMAT_H */
