// podnet native addon: the few things Node.js cannot do itself.
//
//  runInNetns(fd, fn)     call fn synchronously with the calling thread inside the network
//                         namespace `fd`, then always switch back (so a netlink socket opened in
//                         fn lives in that namespace for good)
//  prepareNetnsDir(dir)   make /run/netns a shared mount point (ip netns add does the same)
//  createNetns(path)      ip netns add: new network namespace pinned by a bind mount at path
//  deleteNetns(path)      ip netns delete: lazy unmount + unlink
//  openTun(name, persist) open /dev/net/tun and TUNSETIFF (IFF_TUN | IFF_NO_PI) -> {fd, name}
//  nsType(fd)             ioctl(NS_GET_NSTYPE): the CLONE_NEW* type of a namespace fd (0x40000000 = net)
//  spawnDetached(path, argv) -> Promise<{pid, fd}>: posix_spawn (vfork-fast, unlike a fork of this
//                         big process), on a libuv thread, of a program in a new session with stdin
//                         /dev/null and stdout+stderr on a pipe; fd is its read end ("ready", errors)
//  deleteLinkAsync(nsPath, name) -> Promise<boolean>: RTM_DELLINK of NAME inside the namespace
//                         at nsPath, on a libuv worker thread (the kernel waits for an RCU grace
//                         period, ~16 ms, inside sendmsg: done on the event loop it would stall it).
//                         false when the link (or the namespace) is already gone
//  reap(pid)              waitpid(pid, WNOHANG): true once a child spawned so has been reaped
//                         (or is not our child); libuv only reaps what it spawned itself
//  udpTunnelOpen(opts)    the UDP transport's TUN<->UDP packet loop on its own thread (udptun.cc)
//  tuneNetlinkSocket(fds, protocol, port, sndbuf, rcvbuf, capAck) -> {fd, sndbuf, rcvbuf} | null:
//                         of the candidate fds, the one AF_NETLINK socket of `protocol` bound
//                         to `port`: SO_SNDBUFFORCE / SO_RCVBUFFORCE (past net.core.wmem_max /
//                         rmem_max, as nft does; needs CAP_NET_ADMIN) and NETLINK_CAP_ACK (errors
//                         without the echoed message). node-netlink has no such setters and does
//                         not give its fd, so the caller passes the fds that appeared when it
//                         opened the socket; null when not exactly one matches
//
// Errors are thrown as Error objects with `code` (errno name), `errno`, `syscall`, `path`.
#include <napi.h>
#include <uv.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <spawn.h>
#include <signal.h>
#include <unistd.h>

#include <string>
#include <vector>

extern char** environ;

#include "nsutil.h"
#include "udptun.h"

namespace {

Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall, const std::string& path) {
  char name[64];
  uv_err_name_r(-err, name, sizeof(name));
  std::string msg = std::string(syscall) + " failed: " + strerror(err);
  if (!path.empty()) msg += " (" + path + ")";
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, name));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, syscall));
  if (!path.empty()) e.Set("path", Napi::String::New(env, path));
  return e;
}

std::string StringArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsString())
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}

int IntArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsNumber())
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a number");
  return info[i].As<Napi::Number>().Int32Value();
}

void ReturnHome(int orig) {
  if (setns(orig, CLONE_NEWNET) < 0) {
    fprintf(stderr, "podnet native: cannot return to the original network namespace: %s\n",
            strerror(errno));
    abort();
  }
  close(orig);
}

Napi::Value RunInNetns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = IntArg(info, 0, "fd");
  if (info.Length() < 2 || !info[1].IsFunction())
    throw Napi::TypeError::New(env, "fn must be a function");
  Napi::Function fn = info[1].As<Napi::Function>();

  int orig = pn_open_thread_netns();
  if (orig < 0) throw ErrnoError(env, -orig, "open", "/proc/thread-self/ns/net");
  if (setns(fd, CLONE_NEWNET) < 0) {
    int err = errno;
    close(orig);
    throw ErrnoError(env, err, "setns", "");
  }
  Napi::Value result;
  try {
    result = fn.Call(env.Global(), {});
  } catch (...) {
    ReturnHome(orig);
    throw;
  }
  ReturnHome(orig);
  return result;
}

Napi::Value PrepareNetnsDir(const Napi::CallbackInfo& info) {
  std::string dir = StringArg(info, 0, "dir");
  int rc = pn_prepare_netns_dir(dir.c_str());
  if (rc < 0) throw ErrnoError(info.Env(), -rc, "mount", dir);
  return info.Env().Undefined();
}

Napi::Value CreateNetns(const Napi::CallbackInfo& info) {
  std::string path = StringArg(info, 0, "path");
  int rc = pn_create_netns(path.c_str());
  if (rc < 0) throw ErrnoError(info.Env(), -rc, "netns_add", path);
  return info.Env().Undefined();
}

Napi::Value DeleteNetns(const Napi::CallbackInfo& info) {
  std::string path = StringArg(info, 0, "path");
  int rc = pn_delete_netns(path.c_str());
  if (rc < 0) throw ErrnoError(info.Env(), -rc, "netns_delete", path);
  return info.Env().Undefined();
}

Napi::Value OpenTun(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = StringArg(info, 0, "name");
  bool persist = info.Length() > 1 && info[1].ToBoolean().Value();
  if (name.empty() || name.size() >= IFNAMSIZ)
    throw Napi::TypeError::New(env, "tun name must be 1-15 characters");
  int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) throw ErrnoError(env, errno, "open", "/dev/net/tun");
  struct ifreq ifr;
  memset(&ifr, 0, sizeof(ifr));
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  memcpy(ifr.ifr_name, name.data(), name.size());
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int err = errno;
    close(fd);
    throw ErrnoError(env, err, "ioctl(TUNSETIFF)", name);
  }
  if (persist && ioctl(fd, TUNSETPERSIST, 1) < 0) {
    int err = errno;
    close(fd);
    throw ErrnoError(env, err, "ioctl(TUNSETPERSIST)", name);
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("fd", Napi::Number::New(env, fd));
  out.Set("name", Napi::String::New(env, ifr.ifr_name));
  return out;
}

Napi::Value NsType(const Napi::CallbackInfo& info) {
  int fd = IntArg(info, 0, "fd");
  int t = ioctl(fd, NS_GET_NSTYPE);
  if (t < 0) throw ErrnoError(info.Env(), errno, "ioctl(NS_GET_NSTYPE)", "");
  return Napi::Number::New(info.Env(), t);
}

// posix_spawn of path/args in a new session, stdin /dev/null, stdout+stderr on a new pipe.
// Returns 0 and sets *pid, *readFd; or an errno.
int SpawnDetachedHere(const std::string& path, const std::vector<std::string>& args, pid_t* pid, int* readFd) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) return errno;
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&at);
  // dup2 onto 1 and 2 clears close-on-exec there; the pipe's own descriptors close on exec.
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, p[1], 1);
  posix_spawn_file_actions_adddup2(&fa, p[1], 2);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&at, &none);
  posix_spawnattr_setsigdefault(&at, &all);
  posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_USEVFORK);
  int rc = posix_spawn(pid, path.c_str(), &fa, &at, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  close(p[1]);
  if (rc != 0) {
    close(p[0]);
    return rc;
  }
  *readFd = p[0];
  return 0;
}

std::vector<std::string> StringArray(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsArray()) throw Napi::TypeError::New(info.Env(), std::string(what) + " must be an array of strings");
  Napi::Array arr = info[i].As<Napi::Array>();
  std::vector<std::string> out;
  for (uint32_t k = 0; k < arr.Length(); k++) {
    Napi::Value v = arr.Get(k);
    if (!v.IsString()) throw Napi::TypeError::New(info.Env(), std::string(what) + " must be an array of strings");
    out.push_back(v.As<Napi::String>().Utf8Value());
  }
  return out;
}

// The spawn runs on a libuv thread: with vfork semantics the spawning thread waits until
// the child has exec'd, which on a busy machine can take a millisecond or more.
class SpawnWorker : public Napi::AsyncWorker {
 public:
  SpawnWorker(Napi::Env env, std::string path, std::vector<std::string> args)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), path_(std::move(path)), args_(std::move(args)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override { err_ = SpawnDetachedHere(path_, args_, &pid_, &fd_); }
  void OnOK() override {
    Napi::Env env = Env();
    if (err_) return deferred_.Reject(ErrnoError(env, err_, "posix_spawn", path_).Value());
    Napi::Object out = Napi::Object::New(env);
    out.Set("pid", Napi::Number::New(env, pid_));
    out.Set("fd", Napi::Number::New(env, fd_));
    deferred_.Resolve(out);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::string path_;
  std::vector<std::string> args_;
  pid_t pid_ = 0;
  int fd_ = -1;
  int err_ = 0;
};

Napi::Value SpawnDetached(const Napi::CallbackInfo& info) {
  std::string path = StringArg(info, 0, "path");
  auto* w = new SpawnWorker(info.Env(), path, StringArray(info, 1, "argv"));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// RTM_DELLINK by name over a fresh NETLINK_ROUTE socket in the calling thread's netns.
// Returns 0, or -errno (-ENODEV: no such link).
int DeleteLinkHere(const std::string& name) {
  int sk = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (sk < 0) return -errno;
  struct {
    struct nlmsghdr nh;
    struct ifinfomsg ifi;
    char attrs[64];
  } req;
  memset(&req, 0, sizeof(req));
  req.nh.nlmsg_type = RTM_DELLINK;
  req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  req.nh.nlmsg_seq = 1;
  req.ifi.ifi_family = AF_UNSPEC;
  struct rtattr* rta = reinterpret_cast<struct rtattr*>(req.attrs);
  rta->rta_type = IFLA_IFNAME;
  rta->rta_len = RTA_LENGTH(name.size() + 1);
  memcpy(RTA_DATA(rta), name.c_str(), name.size() + 1);
  req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg)) + RTA_ALIGN(rta->rta_len);
  int rc = 0;
  if (send(sk, &req, req.nh.nlmsg_len, 0) < 0) {
    rc = -errno;
  } else {
    char buf[4096];
    for (;;) {
      ssize_t n = recv(sk, buf, sizeof(buf), 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        rc = -errno;
        break;
      }
      struct nlmsghdr* h = reinterpret_cast<struct nlmsghdr*>(buf);
      if (NLMSG_OK(h, static_cast<unsigned>(n)) && h->nlmsg_type == NLMSG_ERROR) {
        struct nlmsgerr* e = reinterpret_cast<struct nlmsgerr*>(NLMSG_DATA(h));
        rc = e->error;
        break;
      }
    }
  }
  close(sk);
  return rc;
}

class DeleteLinkWorker : public Napi::AsyncWorker {
 public:
  DeleteLinkWorker(Napi::Env env, std::string nsPath, std::string name)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), nsPath_(std::move(nsPath)), name_(std::move(name)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    int target = open(nsPath_.c_str(), O_RDONLY | O_CLOEXEC);
    if (target < 0) {
      err_ = errno;
      return;
    }
    int orig = pn_open_thread_netns();
    if (orig < 0) {
      err_ = -orig;
      close(target);
      return;
    }
    if (setns(target, CLONE_NEWNET) < 0) {
      err_ = errno;
      close(orig);
      close(target);
      return;
    }
    close(target);
    rc_ = DeleteLinkHere(name_);
    // A pool thread that cannot go home would run other work in the wrong namespace.
    ReturnHome(orig);
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (err_ == ENOENT) return deferred_.Resolve(Napi::Boolean::New(env, false));
    if (err_) return deferred_.Reject(ErrnoError(env, err_, "setns", nsPath_).Value());
    if (rc_ == -ENODEV) return deferred_.Resolve(Napi::Boolean::New(env, false));
    if (rc_ < 0) return deferred_.Reject(ErrnoError(env, -rc_, "RTM_DELLINK", name_).Value());
    deferred_.Resolve(Napi::Boolean::New(env, true));
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::string nsPath_;
  std::string name_;
  int err_ = 0;
  int rc_ = 0;
};

Napi::Value DeleteLinkAsync(const Napi::CallbackInfo& info) {
  std::string nsPath = StringArg(info, 0, "nsPath");
  std::string name = StringArg(info, 1, "name");
  if (name.empty() || name.size() >= IFNAMSIZ) throw Napi::TypeError::New(info.Env(), "link name must be 1-15 characters");
  auto* w = new DeleteLinkWorker(info.Env(), nsPath, name);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Value Reap(const Napi::CallbackInfo& info) {
  int pid = IntArg(info, 0, "pid");
  int st = 0;
  pid_t r = waitpid(pid, &st, WNOHANG);
  if (r < 0 && errno != ECHILD) throw ErrnoError(info.Env(), errno, "waitpid", "");
  return Napi::Boolean::New(info.Env(), r != 0);
}

Napi::Value TuneNetlinkSocket(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArray()) throw Napi::TypeError::New(env, "fds must be an array");
  Napi::Array fds = info[0].As<Napi::Array>();
  int protocol = IntArg(info, 1, "protocol");
  int port = IntArg(info, 2, "port");
  int sndbuf = IntArg(info, 3, "sndbuf");
  int rcvbuf = IntArg(info, 4, "rcvbuf");
  bool capAck = info.Length() > 5 && info[5].ToBoolean().Value();
  int found = -1;
  for (uint32_t i = 0; i < fds.Length(); i++) {
    Napi::Value v = fds.Get(i);
    if (!v.IsNumber()) continue;
    int fd = v.As<Napi::Number>().Int32Value();
    int val = 0;
    socklen_t len = sizeof(val);
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &val, &len) < 0 || val != AF_NETLINK) continue;
    len = sizeof(val);
    if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &val, &len) < 0 || val != protocol) continue;
    struct sockaddr_nl sa;
    socklen_t salen = sizeof(sa);
    memset(&sa, 0, sizeof(sa));
    if (getsockname(fd, (struct sockaddr*)&sa, &salen) < 0 || sa.nl_family != AF_NETLINK || (int)sa.nl_pid != port) continue;
    if (found >= 0) return env.Null();  // two matches: refuse to guess
    found = fd;
  }
  if (found < 0) return env.Null();
  if (sndbuf > 0 && setsockopt(found, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf)) < 0) throw ErrnoError(env, errno, "setsockopt(SO_SNDBUFFORCE)", "");
  if (rcvbuf > 0 && setsockopt(found, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) < 0) throw ErrnoError(env, errno, "setsockopt(SO_RCVBUFFORCE)", "");
  int one = 1;
  if (capAck && setsockopt(found, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one)) < 0) throw ErrnoError(env, errno, "setsockopt(NETLINK_CAP_ACK)", "");
  int snd = 0, rcv = 0;
  socklen_t len = sizeof(snd);
  getsockopt(found, SOL_SOCKET, SO_SNDBUF, &snd, &len);
  len = sizeof(rcv);
  getsockopt(found, SOL_SOCKET, SO_RCVBUF, &rcv, &len);
  Napi::Object out = Napi::Object::New(env);
  out.Set("fd", Napi::Number::New(env, found));
  out.Set("sndbuf", Napi::Number::New(env, snd));
  out.Set("rcvbuf", Napi::Number::New(env, rcv));
  return out;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("tuneNetlinkSocket", Napi::Function::New(env, TuneNetlinkSocket, "tuneNetlinkSocket"));
  exports.Set("spawnDetached", Napi::Function::New(env, SpawnDetached, "spawnDetached"));
  exports.Set("reap", Napi::Function::New(env, Reap, "reap"));
  exports.Set("deleteLinkAsync", Napi::Function::New(env, DeleteLinkAsync, "deleteLinkAsync"));
  exports.Set("runInNetns", Napi::Function::New(env, RunInNetns, "runInNetns"));
  exports.Set("prepareNetnsDir", Napi::Function::New(env, PrepareNetnsDir, "prepareNetnsDir"));
  exports.Set("createNetns", Napi::Function::New(env, CreateNetns, "createNetns"));
  exports.Set("deleteNetns", Napi::Function::New(env, DeleteNetns, "deleteNetns"));
  exports.Set("nsType", Napi::Function::New(env, NsType, "nsType"));
  exports.Set("openTun", Napi::Function::New(env, OpenTun, "openTun"));
  podnet::InitUdpTunnel(env, exports);  // udpTunnelOpen: the UDP transport's packet loop (udptun.cc)
  return exports;
}

}  // namespace

NODE_API_MODULE(podnet_native, Init)
