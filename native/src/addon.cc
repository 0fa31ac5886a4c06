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
#include <unistd.h>

#include <string>

#include "nsutil.h"

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

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("runInNetns", Napi::Function::New(env, RunInNetns, "runInNetns"));
  exports.Set("prepareNetnsDir", Napi::Function::New(env, PrepareNetnsDir, "prepareNetnsDir"));
  exports.Set("createNetns", Napi::Function::New(env, CreateNetns, "createNetns"));
  exports.Set("deleteNetns", Napi::Function::New(env, DeleteNetns, "deleteNetns"));
  exports.Set("nsType", Napi::Function::New(env, NsType, "nsType"));
  exports.Set("openTun", Napi::Function::New(env, OpenTun, "openTun"));
  return exports;
}

}  // namespace

NODE_API_MODULE(podnet_native, Init)
