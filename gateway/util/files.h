/*
 * gateway/util/files.h — reading files and walking folders for the CLI and the
 * loaders (prefix files_). Paths are collected in name order, so runs are
 * reproducible.
 *
 * Memory: files_read returns a malloc'd buffer (caller frees); a file_list
 * owns its paths (files_list_free).
 */
#ifndef GATEWAY_FILES_H
#define GATEWAY_FILES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct file_list {
    char **paths;
    size_t count, capacity;
} file_list;

/* Add `path`: a file as is, a directory as every *.json below it (recursively, in name order).
 * Returns false (with errno set and a message on stderr prefixed by `who`) when path cannot be read. */
bool files_collect(file_list *list, const char *path, const char *who);
void files_list_free(file_list *list);

/* The last part of a path: what follows its last '/', or the whole path when it has none (points into it). */
const char *files_base_name(const char *path);

/* Writes n bytes at offset `at`, whole (a short write or EINTR goes on). False with errno. */
bool files_pwrite_all(int fd, const void *bytes, size_t n, uint64_t at);

/* The whole file in a malloc'd buffer (NUL-terminated; *len excludes the NUL); NULL with errno on failure. */
char *files_read(const char *path, size_t *len);

/* fsync of a folder: the entries of files just created in it survive a crash (a synced file nobody can find
 * is lost all the same). False with errno. */
bool files_sync_dir(const char *dir);

/*
 * A copy of file `from` as the new file `to` (mode 0600, refused when it exists), up to the size `from` has
 * when the copy begins, synced. Blocks of `block` bytes that hold only zeros are left as holes, so a sparse
 * file stays sparse. *bytes += the size, *data_bytes += the bytes of blocks with data. False with a reason,
 * and then no `to` is left behind.
 */
bool files_copy_sparse(const char *from, const char *to, size_t block, uint64_t *bytes, uint64_t *data_bytes, char *err,
                       size_t errlen);

#endif
