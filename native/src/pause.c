/* pause: the process that owns a pod's namespaces.
 *
 *   pause [--netns PATH | --join PATH] [--hostname NAME] [--ready-fd FD]
 *
 * It unshares new network, UTS and IPC namespaces and pins the network namespace with a
 * bind mount at PATH (so `ip netns exec` works) — or, with --join, enters the network
 * namespace already pinned at PATH (the agent creates and configures it meanwhile) and
 * unshares only UTS and IPC. It optionally sets the hostname, reports "ready <pid>" on FD
 * (default 1) and sleeps. It reaps any child it inherits (it is a child subreaper) and
 * exits 0 on SIGTERM or SIGINT, unpinning PATH first so the namespace is released once
 * nothing else holds it. It survives its creator: start it detached (new session) and it
 * keeps the pod's network alive across agent restarts.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nsutil.h"

static void die(const char *what, int err) {
  fprintf(stderr, "pause: %s: %s\n", what, strerror(err));
  exit(1);
}

static void usage(void) {
  fprintf(stderr, "usage: pause [--netns PATH | --join PATH] [--hostname NAME] [--ready-fd FD]\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *netns_path = NULL;
  int join = 0;
  const char *hostname = NULL;
  int ready_fd = 1;
  for (int i = 1; i < argc; i++) {
    if ((strcmp(argv[i], "--netns") == 0 || strcmp(argv[i], "--join") == 0) && i + 1 < argc) {
      if (netns_path) usage();
      join = strcmp(argv[i], "--join") == 0;
      netns_path = argv[++i];
    } else if (strcmp(argv[i], "--hostname") == 0 && i + 1 < argc) {
      hostname = argv[++i];
    } else if (strcmp(argv[i], "--ready-fd") == 0 && i + 1 < argc) {
      char *end = NULL;
      long v = strtol(argv[++i], &end, 10);
      if (!end || *end || v < 0 || v > 1024) usage();
      ready_fd = (int)v;
    } else if (strcmp(argv[i], "--version") == 0) {
      printf("pause (podnet)\n");
      return 0;
    } else {
      usage();
    }
  }
  if (netns_path && netns_path[0] != '/') {
    fprintf(stderr, "pause: --netns / --join must be an absolute path\n");
    return 2;
  }

  /* Block the signals we handle before anything else so none is lost. */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGCHLD);
  sigaddset(&set, SIGHUP);
  if (sigprocmask(SIG_BLOCK, &set, NULL) < 0) die("sigprocmask", errno);
  signal(SIGPIPE, SIG_IGN);

  if (join) {
    int fd = open(netns_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) die(netns_path, errno);
    if (setns(fd, CLONE_NEWNET) < 0) die("setns", errno);
    close(fd);
    if (unshare(CLONE_NEWUTS | CLONE_NEWIPC) < 0) die("unshare", errno);
  } else if (unshare(CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC) < 0) {
    die("unshare", errno);
  }
  if (hostname && sethostname(hostname, strlen(hostname)) < 0) die("sethostname", errno);
  if (netns_path && !join) {
    char dir[4096];
    size_t n = strlen(netns_path);
    if (n >= sizeof(dir)) die("--netns", ENAMETOOLONG);
    memcpy(dir, netns_path, n + 1);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
      *slash = '\0';
      int rc = pn_prepare_netns_dir(dir);
      if (rc < 0) die("prepare netns dir", -rc);
    }
    int rc = pn_pin_current_netns(netns_path);
    if (rc < 0) die(netns_path, -rc);
  }
  prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);

  /* Tell the creator we are ready, then let go of every descriptor it gave us. */
  dprintf(ready_fd, "ready %d\n", (int)getpid());
  int devnull = open("/dev/null", O_RDWR);
  if (devnull >= 0) {
    dup2(devnull, 0);
    dup2(devnull, 1);
    dup2(devnull, 2);
    if (devnull > 2) close(devnull);
  }
  if (ready_fd > 2) close(ready_fd);
  if (chdir("/") < 0) { /* not fatal */ }

  for (;;) {
    siginfo_t si;
    int sig = sigwaitinfo(&set, &si);
    if (sig < 0) continue;
    if (sig == SIGCHLD) {
      while (waitpid(-1, NULL, WNOHANG) > 0) {
      }
      continue;
    }
    if (sig == SIGHUP) continue;
    /* SIGTERM / SIGINT: release the pin and leave. */
    if (netns_path) pn_delete_netns(netns_path);
    return 0;
  }
}
