#include "nsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#ifndef MNT_DETACH
#define MNT_DETACH 2
#endif

int pn_open_thread_netns(void) {
  int fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  return fd < 0 ? -errno : fd;
}

int pn_prepare_netns_dir(const char *dir) {
  if (mkdir(dir, 0755) < 0 && errno != EEXIST) return -errno;
  /* Same loop as iproute2's netns_add: try to make it shared; if it is not a mount point
   * yet (EINVAL), bind it onto itself first and try again. */
  int made_mount = 0;
  for (;;) {
    if (mount("", dir, "none", MS_SHARED | MS_REC, NULL) == 0) return 0;
    if (errno != EINVAL || made_mount) return -errno;
    if (mount(dir, dir, "none", MS_BIND | MS_REC, NULL) < 0) return -errno;
    made_mount = 1;
  }
}

int pn_pin_current_netns(const char *path) {
  int fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
  if (fd < 0) return -errno;
  close(fd);
  if (mount("/proc/thread-self/ns/net", path, "none", MS_BIND, NULL) < 0) {
    int err = errno;
    unlink(path);
    return -err;
  }
  return 0;
}

int pn_create_netns(const char *path) {
  int orig = pn_open_thread_netns();
  if (orig < 0) return orig;
  /* Reserve the name first so a collision is reported before any namespace exists. */
  int fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
  if (fd < 0) {
    int err = errno;
    close(orig);
    return -err;
  }
  close(fd);
  int rc = 0;
  if (unshare(CLONE_NEWNET) < 0) {
    rc = -errno;
  } else if (mount("/proc/thread-self/ns/net", path, "none", MS_BIND, NULL) < 0) {
    rc = -errno;
  }
  /* Always go back. A thread that cannot return to its namespace would silently
   * configure the wrong host from now on: that is worse than dying. */
  if (setns(orig, CLONE_NEWNET) < 0) {
    fprintf(stderr, "podnet native: cannot return to the original network namespace: %s\n",
            strerror(errno));
    abort();
  }
  close(orig);
  if (rc < 0) unlink(path);
  return rc;
}

int pn_delete_netns(const char *path) {
  struct stat st;
  if (lstat(path, &st) < 0) return -errno;
  if (umount2(path, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT) return -errno;
  if (unlink(path) < 0 && errno != ENOENT) return -errno;
  return 0;
}
