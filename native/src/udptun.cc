// The UDP transport's packet loop: flannel's "udp" backend, done on a dedicated pthread.
//
//   TUN (podnet.udp) --read--> longest-prefix match of the destination --> sendmmsg to the
//   peer node's address:port, one IP packet per UDP datagram (the wire format of flannel's
//   udp backend: no header of our own);
//   UDP socket --recvmmsg--> known peer? well-formed IPv4/IPv6? source inside a subnet of
//   that peer? --> write to the TUN fd.
//   Everything else is dropped and counted; nothing on the wire can stop the loop.
//
// Speed comes from not paying per packet:
//  - The TUN is opened with IFF_VNET_HDR and TUNSETOFFLOAD(CSUM|TSO4|TSO6), so the kernel
//    hands over TCP super-packets of up to 64 KiB. They are cut into MTU-sized segments here
//    (headers rewritten, checksums completed; the payload is never copied in user space:
//    each segment is an iovec pair [rewritten header][slice of the super-packet]).
//  - Consecutive datagrams of one size to one peer leave in a single sendmsg with UDP_SEGMENT
//    (UDP GSO): one syscall and one trip through the stack for up to 64 datagrams. On the wire
//    they are ordinary datagrams, each carrying one complete IP packet with valid checksums.
//  - The socket has UDP_GRO: runs of equal-size datagrams from one peer arrive in one buffer.
//    TCP segments of one flow that follow each other are verified (checksum, flags, seq) and
//    written back to the TUN as one super-packet (virtio_net_hdr GSO_TCPV4/6, NEEDS_CSUM), so
//    the receiving node's stack and the pod see GRO-sized packets (userspace GRO, as
//    wireguard-go does it).
//  - Batches: up to `batch` TUN reads, then one sendmmsg; one recvmmsg of `batch` buffers.
// With offload off (opts.offload = false), packets are plain IP packets both ways (one TUN
// read/write per packet, still batched sendmmsg/recvmmsg, no GSO/GRO).
//
// The peer table is replaced from the JS thread while the loop runs, RCU style: the loop
// loads the table pointer once per iteration and bumps a generation counter at each
// quiescent point (the top of the loop); a retired table is freed once the generation has
// moved past the value read right after the swap, i.e. once the loop can no longer hold it.
//
// Wire encoding of the peer table (built by src/kernel/udptunnel.ts, checked strictly here):
//   header 16 bytes: "PNUT" | u8 version = 1 | u8 underlay family (4|6) | u16 0 |
//                    u32le entry count | u32 0
//   entry  40 bytes: u8 family (4|6) | u8 prefix length | u16be peer port |
//                    16 bytes subnet network address (IPv4: first 4 bytes, rest 0) |
//                    16 bytes peer underlay address (IPv4: first 4 bytes, rest 0) | u32 0
#include "udptun.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

namespace podnet {
namespace {

// <linux/virtio_net.h> does not compile as C++ (a field named `class`): the legacy header
// the TUN uses, and its constants, restated.
struct virtio_net_hdr {
  uint8_t flags;
  uint8_t gso_type;
  uint16_t hdr_len;
  uint16_t gso_size;
  uint16_t csum_start;
  uint16_t csum_offset;
};
static_assert(sizeof(virtio_net_hdr) == 10, "virtio_net_hdr is 10 bytes");
constexpr uint8_t VIRTIO_NET_HDR_F_NEEDS_CSUM = 1, VIRTIO_NET_HDR_F_DATA_VALID = 2;
constexpr uint8_t VIRTIO_NET_HDR_GSO_NONE = 0, VIRTIO_NET_HDR_GSO_TCPV4 = 1, VIRTIO_NET_HDR_GSO_TCPV6 = 4,
                  VIRTIO_NET_HDR_GSO_ECN = 0x80;

constexpr size_t kVnetLen = sizeof(struct virtio_net_hdr);  // 10
// A TUN read: vnet header + up to 64 KiB (the device's gso_max_size) + slack.
constexpr size_t kTunBuf = kVnetLen + 65536 + 512;
// A UDP receive: one datagram, or a GRO run of up to 64 KiB.
constexpr size_t kRxBuf = 65536 + 512;
// UDP_MAX_SEGMENTS is 64 on older kernels (128 on newer ones).
constexpr int kMaxGsoSegs = 64;
// Bytes of UDP payload in one GSO send (the UDP length field is 16 bits).
constexpr uint32_t kMaxGsoBytes = 65000;
// Segments merged into one super-packet written to the TUN.
constexpr int kMaxCoalesce = 64;

constexpr uint8_t TCP_FIN = 0x01, TCP_SYN = 0x02, TCP_RST = 0x04, TCP_PSH = 0x08, TCP_ACK = 0x10,
                  TCP_URG = 0x20, TCP_ECE = 0x40, TCP_CWR = 0x80;

// ---------------------------------------------------------------------------------------
// Counters. One writer (the loop thread), read from JS: relaxed atomics.

#define PN_COUNTERS(X)                                                                        \
  X(txPackets)        /* IP packets sent to peers (after segmentation), one datagram each */   \
  X(txBytes)          /* their bytes (UDP payload) */                                          \
  X(txTunReads)       /* packets read from the TUN */                                          \
  X(txTunGso)         /* of which TCP super-packets (GSO) that were segmented */               \
  X(txSendCalls)      /* sendmmsg/sendmsg calls */                                             \
  X(txGsoSends)       /* messages that carried several datagrams (UDP_SEGMENT) */              \
  X(txGsoFallbacks)   /* GSO sends refused by the kernel and resent datagram by datagram */    \
  X(rxPackets)        /* IP packets written to the TUN */                                      \
  X(rxBytes)          /* their bytes */                                                        \
  X(rxDatagrams)      /* datagrams received (including dropped ones) */                        \
  X(rxRecvCalls)      /* recvmmsg calls that returned data */                                  \
  X(rxGroBatches)     /* receive buffers that held a GRO run of several datagrams */           \
  X(rxTunWrites)      /* write/writev calls to the TUN */                                      \
  X(rxCoalesced)      /* packets merged into a preceding TCP segment (userspace GRO) */        \
  X(dropTxNoRoute)    /* destination in no subnet of the table */                              \
  X(dropTxMalformed)  /* unparseable packet or vnet header from the TUN */                     \
  X(dropTxOversized)  /* larger than the MTU (or segments that would be) */                    \
  X(dropTxUnsupported) /* GSO kinds that are not TCP (never offered to the kernel) */          \
  X(dropTxSendError)  /* sendmmsg failed for the datagram (errno in lastErrno) */              \
  X(dropTxBackpressure) /* socket send buffer stayed full past SO_SNDTIMEO */                  \
  X(dropRxShort)      /* datagram shorter than an IP header */                                 \
  X(dropRxMalformed)  /* not IPv4/IPv6, bad header/length/header checksum */                   \
  X(dropRxTruncated)  /* IP length larger than the datagram, or datagram larger than a buffer */ \
  X(dropRxOversized)  /* inner packet larger than the MTU */                                   \
  X(dropRxUnknownPeer) /* datagram from an address:port that is not in the table */            \
  X(dropRxSpoofed)    /* inner source not inside a subnet of the sending peer */               \
  X(dropRxBadChecksum) /* TCP segment with a wrong checksum */                                 \
  X(dropRxTunWriteError) /* the TUN refused the packet */                                      \
  X(tunReadErrors)    /* TUN read errors other than EAGAIN */                                  \
  X(sockRecvErrors)   /* recvmmsg errors other than EAGAIN */                                  \
  X(loopIterations)   /* loop passes (each may handle a batch each way) */                     \
  X(loopWakeups)      /* epoll_wait calls that slept */                                        \
  X(tableSwaps)       /* peer tables installed */                                              \
  X(lastErrno)        /* errno of the last failed syscall in the loop */

enum CounterId {
#define PN_ENUM(n) C_##n,
  PN_COUNTERS(PN_ENUM)
#undef PN_ENUM
      C_COUNT
};

const char* const kCounterNames[] = {
#define PN_NAME(n) #n,
    PN_COUNTERS(PN_NAME)
#undef PN_NAME
};

// ---------------------------------------------------------------------------------------
// Internet checksum (RFC 1071) in native byte order: 32-bit words summed into 64 bits, the
// folded result stored back with memcpy is the checksum in network order (byte-order
// independence of the one's complement sum).

inline uint64_t CsumAdd(const uint8_t* p, size_t n, uint64_t acc) {
  uint64_t s0 = acc, s1 = 0, s2 = 0, s3 = 0;
  while (n >= 16) {
    uint32_t a, b, c, d;
    memcpy(&a, p, 4);
    memcpy(&b, p + 4, 4);
    memcpy(&c, p + 8, 4);
    memcpy(&d, p + 12, 4);
    s0 += a;
    s1 += b;
    s2 += c;
    s3 += d;
    p += 16;
    n -= 16;
  }
  while (n >= 4) {
    uint32_t a;
    memcpy(&a, p, 4);
    s0 += a;
    p += 4;
    n -= 4;
  }
  if (n >= 2) {
    uint16_t a;
    memcpy(&a, p, 2);
    s1 += a;
    p += 2;
    n -= 2;
  }
  if (n) {
    // The odd last byte is the high-order byte of a zero-padded 16-bit word in network order.
    uint8_t w[2] = {p[0], 0};
    uint16_t a;
    memcpy(&a, w, 2);
    s2 += a;
  }
  // Each sum stays far below 2^64 for packets of 64 KiB; add with carry.
  uint64_t s = s0;
  for (uint64_t x : {s1, s2, s3}) {
    s += x;
    if (s < x) s++;
  }
  return s;
}

inline uint16_t CsumFold(uint64_t s) {
  s = (s & 0xffffffffu) + (s >> 32);
  s = (s & 0xffffffffu) + (s >> 32);
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  return static_cast<uint16_t>(s);
}

inline uint16_t Be16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
inline uint32_t Be32(const uint8_t* p) {
  return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) | (static_cast<uint32_t>(p[2]) << 8) | p[3];
}
inline void PutBe16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
inline void PutBe32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}
inline uint64_t Be64(const uint8_t* p) { return (static_cast<uint64_t>(Be32(p)) << 32) | Be32(p + 4); }
inline void PutNative16(uint8_t* p, uint16_t v) { memcpy(p, &v, 2); }

// Pseudo-header sum (RFC 793 / RFC 8200) for an L4 segment of `l4len` bytes of protocol
// `proto`, in native order, for the IP packet at `ip` (version `ver`).
inline uint64_t PseudoSum(const uint8_t* ip, int ver, uint32_t l4len, uint8_t proto) {
  if (ver == 4) return CsumAdd(ip + 12, 8, static_cast<uint64_t>(htons(proto)) + htons(static_cast<uint16_t>(l4len)));
  return CsumAdd(ip + 8, 32, static_cast<uint64_t>(htonl(l4len)) + htonl(proto));
}

inline void Ipv4HeaderChecksum(uint8_t* ip, size_t ihl) {
  ip[10] = ip[11] = 0;
  PutNative16(ip + 10, static_cast<uint16_t>(~CsumFold(CsumAdd(ip, ihl, 0))));
}

// ---------------------------------------------------------------------------------------
// The peer table: per family, groups of routes by prefix length (longest first), each a
// sorted array searched by bisection; and the peers, sorted by (address, port).

struct PeerKey {
  uint8_t addr[16];
  uint16_t port;
  bool operator<(const PeerKey& o) const {
    int c = memcmp(addr, o.addr, 16);
    return c < 0 || (c == 0 && port < o.port);
  }
  bool operator==(const PeerKey& o) const { return port == o.port && memcmp(addr, o.addr, 16) == 0; }
};

struct Peer {
  PeerKey key;
  sockaddr_storage sa;
  socklen_t salen;
};

struct Route4 {
  uint32_t net;
  uint32_t peer;
};
struct Group4 {
  int len;
  uint32_t mask;
  std::vector<Route4> routes;
};
struct Route6 {
  uint64_t hi, lo;
  uint32_t peer;
};
struct Group6 {
  int len;
  uint64_t mhi, mlo;
  std::vector<Route6> routes;
};

struct Table {
  int family = 4;  // underlay
  std::vector<Peer> peers;
  std::vector<Group4> g4;
  std::vector<Group6> g6;
  size_t entries = 0;

  int Lookup4(uint32_t a) const {
    for (const Group4& g : g4) {
      uint32_t k = a & g.mask;
      auto it = std::lower_bound(g.routes.begin(), g.routes.end(), k, [](const Route4& r, uint32_t v) { return r.net < v; });
      if (it != g.routes.end() && it->net == k) return static_cast<int>(it->peer);
    }
    return -1;
  }
  int Lookup6(uint64_t hi, uint64_t lo) const {
    for (const Group6& g : g6) {
      uint64_t kh = hi & g.mhi, kl = lo & g.mlo;
      auto it = std::lower_bound(g.routes.begin(), g.routes.end(), std::make_pair(kh, kl),
                                 [](const Route6& r, const std::pair<uint64_t, uint64_t>& v) { return r.hi < v.first || (r.hi == v.first && r.lo < v.second); });
      if (it != g.routes.end() && it->hi == kh && it->lo == kl) return static_cast<int>(it->peer);
    }
    return -1;
  }
  // The peer owning the address at `a` (4 or 16 bytes, per `ver`), or -1.
  int LookupAddr(const uint8_t* a, int ver) const { return ver == 4 ? Lookup4(Be32(a)) : Lookup6(Be64(a), Be64(a + 8)); }
  int FindPeer(const PeerKey& k) const {
    auto it = std::lower_bound(peers.begin(), peers.end(), k, [](const Peer& p, const PeerKey& v) { return p.key < v; });
    return it != peers.end() && it->key == k ? static_cast<int>(it - peers.begin()) : -1;
  }
};

uint32_t Mask4(int len) { return len == 0 ? 0 : ~static_cast<uint32_t>(0) << (32 - len); }
uint64_t Mask64(int bits) { return bits <= 0 ? 0 : bits >= 64 ? ~static_cast<uint64_t>(0) : ~static_cast<uint64_t>(0) << (64 - bits); }

constexpr size_t kTableHeader = 16, kTableEntry = 40;

// Parses the wire encoding; on error returns null and sets *err.
std::unique_ptr<Table> ParseTable(const uint8_t* b, size_t n, int underlay, std::string* err) {
  auto fail = [&](const std::string& m) {
    *err = "peer table: " + m;
    return std::unique_ptr<Table>();
  };
  if (n < kTableHeader || memcmp(b, "PNUT", 4) != 0) return fail("bad magic");
  if (b[4] != 1) return fail("unsupported version " + std::to_string(b[4]));
  if (b[5] != underlay) return fail("underlay family " + std::to_string(b[5]) + " does not match the socket's IPv" + std::to_string(underlay));
  uint32_t count = b[8] | (b[9] << 8) | (b[10] << 16) | (static_cast<uint32_t>(b[11]) << 24);
  if (count > 1u << 20) return fail("too many entries");
  if (n != kTableHeader + count * kTableEntry) return fail("length does not match the entry count");
  auto t = std::make_unique<Table>();
  t->family = underlay;
  t->entries = count;
  struct Raw {
    int fam, len;
    uint8_t net[16];
    PeerKey peer;
  };
  std::vector<Raw> raw(count);
  std::vector<PeerKey> keys;
  for (uint32_t i = 0; i < count; i++) {
    const uint8_t* e = b + kTableHeader + i * kTableEntry;
    Raw& r = raw[i];
    r.fam = e[0];
    r.len = e[1];
    r.peer.port = Be16(e + 2);
    memcpy(r.net, e + 4, 16);
    memcpy(r.peer.addr, e + 20, 16);
    std::string at = "entry " + std::to_string(i) + ": ";
    if (r.fam != 4 && r.fam != 6) return fail(at + "family must be 4 or 6");
    int max = r.fam == 4 ? 32 : 128;
    if (r.len > max) return fail(at + "prefix length too long");
    for (int bit = r.len; bit < 128; bit++) {
      if (r.net[bit / 8] & (0x80 >> (bit % 8))) return fail(at + "host bits set in the subnet");
    }
    if (r.peer.port == 0) return fail(at + "port 0");
    if (underlay == 4) {
      for (int k = 4; k < 16; k++)
        if (r.peer.addr[k]) return fail(at + "peer is not an IPv4 address");
    }
    for (int k = 16; k < 20; k++)
      if (e[k + 20]) return fail(at + "reserved bytes not zero");
    keys.push_back(r.peer);
  }
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  for (const PeerKey& k : keys) {
    Peer p{};
    p.key = k;
    if (underlay == 4) {
      auto* s = reinterpret_cast<sockaddr_in*>(&p.sa);
      s->sin_family = AF_INET;
      s->sin_port = htons(k.port);
      memcpy(&s->sin_addr, k.addr, 4);
      p.salen = sizeof(sockaddr_in);
    } else {
      auto* s = reinterpret_cast<sockaddr_in6*>(&p.sa);
      s->sin6_family = AF_INET6;
      s->sin6_port = htons(k.port);
      memcpy(&s->sin6_addr, k.addr, 16);
      p.salen = sizeof(sockaddr_in6);
    }
    t->peers.push_back(p);
  }
  for (const Raw& r : raw) {
    uint32_t peer = static_cast<uint32_t>(t->FindPeer(r.peer));
    if (r.fam == 4) {
      auto g = std::find_if(t->g4.begin(), t->g4.end(), [&](const Group4& x) { return x.len == r.len; });
      if (g == t->g4.end()) {
        t->g4.push_back(Group4{r.len, Mask4(r.len), {}});
        g = t->g4.end() - 1;
      }
      g->routes.push_back(Route4{Be32(r.net), peer});
    } else {
      auto g = std::find_if(t->g6.begin(), t->g6.end(), [&](const Group6& x) { return x.len == r.len; });
      if (g == t->g6.end()) {
        t->g6.push_back(Group6{r.len, Mask64(r.len), Mask64(r.len - 64), {}});
        g = t->g6.end() - 1;
      }
      g->routes.push_back(Route6{Be64(r.net), Be64(r.net + 8), peer});
    }
  }
  for (Group4& g : t->g4) {
    std::sort(g.routes.begin(), g.routes.end(), [](const Route4& a, const Route4& b) { return a.net < b.net; });
    for (size_t i = 1; i < g.routes.size(); i++)
      if (g.routes[i].net == g.routes[i - 1].net) return fail("duplicate subnet");
  }
  for (Group6& g : t->g6) {
    std::sort(g.routes.begin(), g.routes.end(), [](const Route6& a, const Route6& b) { return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo); });
    for (size_t i = 1; i < g.routes.size(); i++)
      if (g.routes[i].hi == g.routes[i - 1].hi && g.routes[i].lo == g.routes[i - 1].lo) return fail("duplicate subnet");
  }
  std::sort(t->g4.begin(), t->g4.end(), [](const Group4& a, const Group4& b) { return a.len > b.len; });
  std::sort(t->g6.begin(), t->g6.end(), [](const Group6& a, const Group6& b) { return a.len > b.len; });
  return t;
}

// ---------------------------------------------------------------------------------------
// Configuration and the shared state between the JS thread and the loop thread.

struct Config {
  std::string tunName;
  int family = 4;  // underlay
  uint8_t local[16] = {};
  uint16_t port = 8285;
  int mtu = 1472;
  bool offload = true;     // TUN: IFF_VNET_HDR + TSO/CSUM offload, segmentation + userspace GRO
  bool udpOffload = true;  // socket: UDP_SEGMENT (GSO) sends and UDP_GRO receives
  int batch = 32;
  int sndbuf = 4 << 20;
  int rcvbuf = 4 << 20;
};

struct Shared {
  std::atomic<uint64_t> counters[C_COUNT];
  std::atomic<const Table*> table{nullptr};
  std::atomic<uint64_t> gen{0};
  std::atomic<bool> stop{false};
  std::atomic<int> tid{0};
  std::atomic<bool> udpGso{true};
  Shared() {
    for (auto& c : counters) c.store(0, std::memory_order_relaxed);
  }
};

// ---------------------------------------------------------------------------------------
// The loop (runs on the tunnel thread; owns its buffers).

class Loop {
 public:
  Loop(const Config& cfg, Shared* sh, int tunFd, int sockFd, int epFd, int evFd)
      : cfg_(cfg), sh_(sh), tun_(tunFd), sock_(sockFd), ep_(epFd), ev_(evFd), vnet_(cfg.offload) {
    int b = cfg_.batch;
    txBufs_.resize(static_cast<size_t>(b) * kTunBuf);
    rxBufs_.resize(static_cast<size_t>(b) * kRxBuf);
    rmsgs_.resize(b);
    riov_.resize(b);
    rnames_.resize(b);
    rcmsg_.resize(static_cast<size_t>(b) * kRxCmsg);
    for (int i = 0; i < b; i++) {
      riov_[i].iov_base = &rxBufs_[static_cast<size_t>(i) * kRxBuf];
      riov_[i].iov_len = kRxBuf;
    }
    for (int i = 0; i < C_COUNT; i++) c_[i] = 0;
  }

  void Run() {
    sh_->tid.store(static_cast<int>(syscall(SYS_gettid)));
    bool tunOk = true;
    while (!sh_->stop.load(std::memory_order_acquire)) {
      // Quiescent point: nothing from the previous iteration's table is held past here.
      sh_->gen.fetch_add(1, std::memory_order_seq_cst);
      const Table* t = sh_->table.load(std::memory_order_seq_cst);
      c_[C_loopIterations]++;
      bool work = false;
      if (tunOk) {
        int r = TxBatch(t);
        if (r < 0) {
          // The device went away under the fd (EBADFD/EIO): stop polling it, keep receiving.
          tunOk = false;
          epoll_ctl(ep_, EPOLL_CTL_DEL, tun_, nullptr);
        }
        work |= r > 0;
      }
      work |= RxBatch(t);
      Publish();
      if (work) continue;
      epoll_event evs[4];
      c_[C_loopWakeups]++;
      int n = epoll_wait(ep_, evs, 4, -1);
      for (int i = 0; i < n; i++) {
        if (evs[i].data.fd == ev_) {
          uint64_t v;
          if (read(ev_, &v, sizeof(v)) < 0) { /* EAGAIN: already drained */ }
        }
      }
    }
    Publish();
  }

 private:
  static constexpr size_t kRxCmsg = CMSG_SPACE(sizeof(int)) + 64;

  // ---- TUN -> UDP ----------------------------------------------------------------------

  // Up to `batch` TUN reads, then the sends. 1 = did work, 0 = nothing to read, -1 = TUN gone.
  int TxBatch(const Table* t) {
    int got = 0, rc = 0;
    for (int i = 0; i < cfg_.batch; i++) {
      uint8_t* buf = &txBufs_[static_cast<size_t>(i) * kTunBuf];
      ssize_t n = read(tun_, buf, kTunBuf);
      if (n < 0) {
        if (errno == EINTR) {
          i--;
          continue;
        }
        if (errno == EAGAIN) break;
        c_[C_tunReadErrors]++;
        c_[C_lastErrno] = static_cast<uint64_t>(errno);
        if (errno == EBADFD || errno == EIO || errno == EBADF) rc = -1;
        break;
      }
      got++;
      c_[C_txTunReads]++;
      if (t) {
        TunPacket(t, buf, static_cast<size_t>(n));
      } else {
        c_[C_dropTxNoRoute]++;
      }
    }
    Flush();
    if (rc < 0) return -1;
    return got > 0 ? 1 : 0;
  }

  void TunPacket(const Table* t, uint8_t* buf, size_t n) {
    uint8_t* pkt = buf;
    size_t len = n;
    virtio_net_hdr h{};
    if (vnet_) {
      if (n < kVnetLen + 1) {
        c_[C_dropTxMalformed]++;
        return;
      }
      memcpy(&h, buf, kVnetLen);
      pkt = buf + kVnetLen;
      len = n - kVnetLen;
    }
    if (len == 0) {
      c_[C_dropTxMalformed]++;
      return;
    }
    if (h.gso_type == VIRTIO_NET_HDR_GSO_NONE) {
      if (h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
        size_t start = le16toh(h.csum_start), off = le16toh(h.csum_offset);
        if (start + off + 2 > len) {
          c_[C_dropTxMalformed]++;
          return;
        }
        // The field holds the pseudo-header sum; sum from csum_start to the end and store.
        uint16_t s = static_cast<uint16_t>(~CsumFold(CsumAdd(pkt + start, len - start, 0)));
        if (s == 0) s = 0xffff;
        PutNative16(pkt + start + off, s);
      }
      SendOne(t, pkt, len);
      return;
    }
    int gt = h.gso_type & ~VIRTIO_NET_HDR_GSO_ECN;
    if (gt != VIRTIO_NET_HDR_GSO_TCPV4 && gt != VIRTIO_NET_HDR_GSO_TCPV6) {
      c_[C_dropTxUnsupported]++;
      return;
    }
    SegmentTcp(t, pkt, len, le16toh(h.gso_size), gt == VIRTIO_NET_HDR_GSO_TCPV4 ? 4 : 6);
  }

  // Destination peer of an IP packet: >= 0, -1 no route, -2 malformed.
  static int RouteOf(const Table* t, const uint8_t* p, size_t len) {
    int ver = p[0] >> 4;
    if (ver == 4 && len >= 20) return t->Lookup4(Be32(p + 16));
    if (ver == 6 && len >= 40) return t->Lookup6(Be64(p + 24), Be64(p + 32));
    return -2;
  }

  void SendOne(const Table* t, uint8_t* p, size_t len) {
    int peer = RouteOf(t, p, len);
    if (peer == -2) {
      c_[C_dropTxMalformed]++;
      return;
    }
    if (peer < 0) {
      c_[C_dropTxNoRoute]++;
      return;
    }
    if (len > static_cast<size_t>(cfg_.mtu)) {
      c_[C_dropTxOversized]++;
      return;
    }
    Reserve(1, 0);
    Add(&t->peers[peer], p, len, nullptr, 0);
  }

  // Cuts a TCP super-packet into segments of gso bytes of payload (the last one shorter).
  void SegmentTcp(const Table* t, uint8_t* p, size_t len, size_t gso, int gver) {
    int ver = p[0] >> 4;
    size_t l4;
    if (ver != gver) {
      c_[C_dropTxMalformed]++;
      return;
    }
    if (ver == 4) {
      size_t ihl = (p[0] & 15) * 4u;
      if (ihl < 20 || len < ihl + 20 || p[9] != IPPROTO_TCP || Be16(p + 2) != len || (Be16(p + 6) & 0x3fff) != 0) {
        c_[C_dropTxMalformed]++;
        return;
      }
      l4 = ihl;
    } else {
      if (len < 60 || p[6] != IPPROTO_TCP || Be16(p + 4) + 40u != len) {
        // Extension headers in a TSO packet: the kernel's TCP never sends them.
        c_[C_dropTxMalformed]++;
        return;
      }
      l4 = 40;
    }
    size_t thl = (p[l4 + 12] >> 4) * 4u;
    if (thl < 20 || l4 + thl > len) {
      c_[C_dropTxMalformed]++;
      return;
    }
    size_t hl = l4 + thl, payload = len - hl;
    if (gso == 0) gso = payload ? payload : 1;
    if (hl + std::min(gso, payload) > static_cast<size_t>(cfg_.mtu)) {
      c_[C_dropTxOversized]++;
      return;
    }
    int peer = t->LookupAddr(p + (ver == 4 ? 16 : 24), ver);
    if (peer < 0) {
      c_[C_dropTxNoRoute]++;
      return;
    }
    const Peer* pe = &t->peers[peer];
    c_[C_txTunGso]++;
    uint32_t seq0 = Be32(p + l4 + 4);
    uint16_t id0 = ver == 4 ? Be16(p + 4) : 0;
    uint8_t flags0 = p[l4 + 13];
    size_t nseg = payload ? (payload + gso - 1) / gso : 1;
    for (size_t i = 0; i < nseg; i++) {
      size_t off = i * gso;
      size_t seg = std::min(gso, payload - off);
      Reserve(2, hl);
      uint8_t* h = AllocHdr(hl);
      memcpy(h, p, hl);
      if (ver == 4) {
        PutBe16(h + 2, static_cast<uint16_t>(hl + seg));
        PutBe16(h + 4, static_cast<uint16_t>(id0 + i));
        Ipv4HeaderChecksum(h, l4);
      } else {
        PutBe16(h + 4, static_cast<uint16_t>(hl - 40 + seg));
      }
      uint8_t* th = h + l4;
      PutBe32(th + 4, seq0 + static_cast<uint32_t>(off));
      uint8_t f = flags0;
      if (i + 1 < nseg) f &= static_cast<uint8_t>(~(TCP_FIN | TCP_PSH));
      if (i > 0) f &= static_cast<uint8_t>(~TCP_CWR);
      th[13] = f;
      th[16] = th[17] = 0;
      uint64_t s = PseudoSum(h, ver, static_cast<uint32_t>(thl + seg), IPPROTO_TCP);
      s = CsumAdd(th, thl, s);
      s = CsumAdd(p + hl + off, seg, s);
      PutNative16(th + 16, static_cast<uint16_t>(~CsumFold(s)));
      Add(pe, h, hl, p + hl + off, seg);
    }
  }

  // Send queue: messages of one or more equal-size datagrams (UDP GSO), flushed by sendmmsg.
  static constexpr int kMsgs = 1024, kIov = 4096;
  static constexpr size_t kHdrPool = 256 * 1024;
  struct Meta {
    const Peer* peer;
    uint32_t segSize;
    uint32_t nseg;
    uint32_t bytes;
    bool closed;
    int iov0;
  };

  void Reserve(int iovs, size_t hdr) {
    if (nmsg_ + 1 > kMsgs || niov_ + iovs > kIov || nhdr_ + hdr + 8 > kHdrPool) Flush();
  }
  uint8_t* AllocHdr(size_t n) {
    uint8_t* p = &hdrPool_[nhdr_];
    nhdr_ += (n + 7) & ~static_cast<size_t>(7);
    return p;
  }
  void Add(const Peer* pe, uint8_t* a, size_t alen, uint8_t* b, size_t blen) {
    uint32_t len = static_cast<uint32_t>(alen + blen);
    Meta* m = nmsg_ ? &meta_[nmsg_ - 1] : nullptr;
    bool gso = sh_->udpGso.load(std::memory_order_relaxed);
    if (!(gso && m && m->peer == pe && !m->closed && len <= m->segSize && m->nseg < kMaxGsoSegs && m->bytes + len <= kMaxGsoBytes)) {
      m = &meta_[nmsg_++];
      *m = Meta{pe, len, 0, 0, false, niov_};
    }
    m->nseg++;
    m->bytes += len;
    if (len < m->segSize) m->closed = true;
    iov_[niov_++] = iovec{a, alen};
    if (b && blen) iov_[niov_++] = iovec{b, blen};
  }

  void FillMsg(int i, msghdr* mh) {
    Meta& m = meta_[i];
    int end = i + 1 < nmsg_ ? meta_[i + 1].iov0 : niov_;
    memset(mh, 0, sizeof(*mh));
    mh->msg_name = const_cast<sockaddr_storage*>(&m.peer->sa);
    mh->msg_namelen = m.peer->salen;
    mh->msg_iov = &iov_[m.iov0];
    mh->msg_iovlen = static_cast<size_t>(end - m.iov0);
    if (m.nseg > 1) {
      char* cb = cmsgs_[i].buf;
      memset(cb, 0, sizeof(cmsgs_[i].buf));
      mh->msg_control = cb;
      mh->msg_controllen = CMSG_SPACE(sizeof(uint16_t));
      cmsghdr* cm = CMSG_FIRSTHDR(mh);
      cm->cmsg_level = SOL_UDP;
      cm->cmsg_type = UDP_SEGMENT;
      cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
      uint16_t gs = static_cast<uint16_t>(m.segSize);
      memcpy(CMSG_DATA(cm), &gs, sizeof(gs));
    }
  }

  // Resends a GSO message the kernel refused, one datagram per sendmsg.
  void SendSplit(int i) {
    Meta& m = meta_[i];
    int end = i + 1 < nmsg_ ? meta_[i + 1].iov0 : niov_;
    int k = m.iov0;
    while (k < end) {
      int first = k;
      size_t sum = 0;
      while (k < end && sum < m.segSize) sum += iov_[k++].iov_len;
      msghdr mh{};
      mh.msg_name = const_cast<sockaddr_storage*>(&m.peer->sa);
      mh.msg_namelen = m.peer->salen;
      mh.msg_iov = &iov_[first];
      mh.msg_iovlen = static_cast<size_t>(k - first);
      c_[C_txSendCalls]++;
      ssize_t r;
      do r = sendmsg(sock_, &mh, 0);
      while (r < 0 && errno == EINTR);
      if (r < 0) {
        c_[C_lastErrno] = static_cast<uint64_t>(errno);
        c_[errno == EAGAIN ? C_dropTxBackpressure : C_dropTxSendError]++;
      } else {
        c_[C_txPackets]++;
        c_[C_txBytes] += sum;
      }
    }
  }

  void Flush() {
    if (nmsg_ == 0) return;
    for (int i = 0; i < nmsg_; i++) FillMsg(i, &mmsg_[i].msg_hdr);
    int done = 0;
    while (done < nmsg_) {
      c_[C_txSendCalls]++;
      int r = sendmmsg(sock_, &mmsg_[done], static_cast<unsigned>(nmsg_ - done), 0);
      if (r > 0) {
        for (int i = done; i < done + r; i++) {
          c_[C_txPackets] += meta_[i].nseg;
          c_[C_txBytes] += meta_[i].bytes;
          if (meta_[i].nseg > 1) c_[C_txGsoSends]++;
        }
        done += r;
        continue;
      }
      int err = r < 0 ? errno : EIO;
      if (err == EINTR) continue;
      c_[C_lastErrno] = static_cast<uint64_t>(err);
      if (err == EAGAIN || err == EWOULDBLOCK) {
        // SO_SNDTIMEO expired with the send buffer still full: shed this batch.
        for (int i = done; i < nmsg_; i++) c_[C_dropTxBackpressure] += meta_[i].nseg;
        break;
      }
      if (meta_[done].nseg > 1 && (err == EIO || err == EINVAL || err == EOPNOTSUPP || err == ENOPROTOOPT)) {
        // The kernel (or the route's device) will not do UDP GSO here.
        c_[C_txGsoFallbacks]++;
        if (err != EINVAL) sh_->udpGso.store(false, std::memory_order_relaxed);
        SendSplit(done);
      } else {
        c_[C_dropTxSendError] += meta_[done].nseg;
      }
      done++;
    }
    nmsg_ = niov_ = 0;
    nhdr_ = 0;
  }

  // ---- UDP -> TUN ----------------------------------------------------------------------

  bool RxBatch(const Table* t) {
    int b = cfg_.batch;
    for (int i = 0; i < b; i++) {
      msghdr& mh = rmsgs_[i].msg_hdr;
      memset(&mh, 0, sizeof(mh));
      mh.msg_name = &rnames_[i];
      mh.msg_namelen = sizeof(sockaddr_storage);
      mh.msg_iov = &riov_[i];
      mh.msg_iovlen = 1;
      mh.msg_control = &rcmsg_[static_cast<size_t>(i) * kRxCmsg];
      mh.msg_controllen = kRxCmsg;
      rmsgs_[i].msg_len = 0;
    }
    int n = recvmmsg(sock_, rmsgs_.data(), static_cast<unsigned>(b), MSG_DONTWAIT, nullptr);
    if (n <= 0) {
      if (n < 0 && errno != EAGAIN && errno != EINTR) {
        c_[C_sockRecvErrors]++;
        c_[C_lastErrno] = static_cast<uint64_t>(errno);
        // Pending socket errors (ICMP) are consumed by the failed call; try again next pass.
        return errno == ECONNREFUSED || errno == EHOSTUNREACH || errno == ENETUNREACH;
      }
      return false;
    }
    c_[C_rxRecvCalls]++;
    for (int i = 0; i < n; i++) Datagram(t, i);
    FlushHead();
    return true;
  }

  void Datagram(const Table* t, int i) {
    msghdr& mh = rmsgs_[i].msg_hdr;
    size_t len = rmsgs_[i].msg_len;
    const uint8_t* buf = static_cast<const uint8_t*>(riov_[i].iov_base);
    size_t gso = 0;
    for (cmsghdr* cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
      if (cm->cmsg_level == SOL_UDP && cm->cmsg_type == UDP_GRO) {
        int v;
        memcpy(&v, CMSG_DATA(cm), sizeof(v));
        if (v > 0) gso = static_cast<size_t>(v);
      }
    }
    if (gso == 0 || gso > len) gso = len ? len : 1;
    uint64_t nd = len ? (len + gso - 1) / gso : 1;
    c_[C_rxDatagrams] += nd;
    if (mh.msg_flags & MSG_TRUNC) {
      c_[C_dropRxTruncated] += nd;
      return;
    }
    PeerKey k{};
    const sockaddr_storage& sa = rnames_[i];
    if (sa.ss_family == AF_INET && cfg_.family == 4) {
      const auto* s = reinterpret_cast<const sockaddr_in*>(&sa);
      memcpy(k.addr, &s->sin_addr, 4);
      k.port = ntohs(s->sin_port);
    } else if (sa.ss_family == AF_INET6 && cfg_.family == 6) {
      const auto* s = reinterpret_cast<const sockaddr_in6*>(&sa);
      memcpy(k.addr, &s->sin6_addr, 16);
      k.port = ntohs(s->sin6_port);
    } else {
      c_[C_dropRxUnknownPeer] += nd;
      return;
    }
    int peer = t ? t->FindPeer(k) : -1;
    if (peer < 0) {
      c_[C_dropRxUnknownPeer] += nd;
      return;
    }
    if (nd > 1) c_[C_rxGroBatches]++;
    for (size_t off = 0; off < len; off += gso) Inner(t, peer, buf + off, std::min(gso, len - off));
    if (len == 0) c_[C_dropRxShort]++;
  }

  // One inner packet from `peer`: validate, then hand to the coalescer.
  void Inner(const Table* t, int peer, const uint8_t* p, size_t len) {
    if (len < 20) {
      c_[C_dropRxShort]++;
      return;
    }
    int ver = p[0] >> 4;
    const uint8_t* src;
    if (ver == 4) {
      size_t ihl = (p[0] & 15) * 4u;
      size_t tot = Be16(p + 2);
      if (ihl < 20 || ihl > len || tot < ihl) {
        c_[C_dropRxMalformed]++;
        return;
      }
      if (tot > len) {
        c_[C_dropRxTruncated]++;
        return;
      }
      if (tot != len || CsumFold(CsumAdd(p, ihl, 0)) != 0xffff) {
        c_[C_dropRxMalformed]++;
        return;
      }
      src = p + 12;
    } else if (ver == 6) {
      if (len < 40) {
        c_[C_dropRxShort]++;
        return;
      }
      size_t pl = Be16(p + 4);
      if (pl + 40 > len) {
        c_[C_dropRxTruncated]++;
        return;
      }
      if (pl + 40 != len) {
        c_[C_dropRxMalformed]++;
        return;
      }
      src = p + 8;
    } else {
      c_[C_dropRxMalformed]++;
      return;
    }
    if (len > static_cast<size_t>(cfg_.mtu)) {
      c_[C_dropRxOversized]++;
      return;
    }
    if (t->LookupAddr(src, ver) != peer) {
      c_[C_dropRxSpoofed]++;
      return;
    }
    Coalesce(p, len, ver);
  }

  // A TCP segment's facts (for the checksum check and merging).
  struct Tcp {
    size_t l4, thl, hl, payload;
    uint8_t flags;
    uint32_t seq;
  };

  static bool ParseTcp(const uint8_t* p, size_t len, int ver, Tcp* o) {
    if (ver == 4) {
      if (p[9] != IPPROTO_TCP || (Be16(p + 6) & 0x3fff) != 0) return false;  // not TCP, or a fragment
      o->l4 = (p[0] & 15) * 4u;
    } else {
      if (p[6] != IPPROTO_TCP) return false;  // extension headers: passed through as is
      o->l4 = 40;
    }
    if (o->l4 + 20 > len) return false;
    o->thl = (p[o->l4 + 12] >> 4) * 4u;
    if (o->thl < 20 || o->l4 + o->thl > len) return false;
    o->hl = o->l4 + o->thl;
    o->payload = len - o->hl;
    o->flags = p[o->l4 + 13];
    o->seq = Be32(p + o->l4 + 4);
    return true;
  }

  // The super-packet being built: the first segment's headers, then payload slices.
  struct Head {
    const uint8_t* first = nullptr;
    size_t len = 0;  // of the first packet
    int ver = 0;
    Tcp tcp{};
    int count = 0;
    size_t total = 0;  // payload bytes so far
    uint32_t nextSeq = 0;
    bool closed = false;
    bool psh = false;
  };

  bool CanMerge(const uint8_t* p, int ver, const Tcp& s) const {
    const Head& h = head_;
    if (h.closed || h.ver != ver || h.count >= kMaxCoalesce) return false;
    if (s.payload == 0 || s.payload > h.tcp.payload || s.hl != h.tcp.hl || s.l4 != h.tcp.l4) return false;
    if (h.tcp.hl + h.total + s.payload > 65535) return false;
    if ((s.flags & ~TCP_PSH) != TCP_ACK) return false;
    if (s.seq != h.nextSeq) return false;
    const uint8_t* q = h.first;
    if (ver == 4) {
      // tos, flags/fragment, ttl, protocol, addresses; the id must follow on.
      if (p[1] != q[1] || p[6] != q[6] || p[7] != q[7] || p[8] != q[8] || memcmp(p + 12, q + 12, 8) != 0) return false;
      if (Be16(p + 4) != static_cast<uint16_t>(Be16(q + 4) + h.count)) return false;
    } else {
      if (memcmp(p, q, 4) != 0 || p[6] != q[6] || p[7] != q[7] || memcmp(p + 8, q + 8, 32) != 0) return false;
    }
    const uint8_t* a = p + s.l4;
    const uint8_t* b = q + s.l4;
    // ports, ack, window, urgent pointer and options identical.
    if (memcmp(a, b, 4) != 0 || memcmp(a + 8, b + 8, 4) != 0 || memcmp(a + 14, b + 14, 2) != 0 || memcmp(a + 18, b + 18, 2) != 0) return false;
    if (s.thl > 20 && memcmp(a + 20, b + 20, s.thl - 20) != 0) return false;
    return true;
  }

  void Coalesce(const uint8_t* p, size_t len, int ver) {
    if (!vnet_) {
      WritePlain(p, len);
      return;
    }
    Tcp s;
    bool tcp = ParseTcp(p, len, ver, &s);
    if (tcp) {
      uint64_t sum = PseudoSum(p, ver, static_cast<uint32_t>(len - s.l4), IPPROTO_TCP);
      if (CsumFold(CsumAdd(p + s.l4, len - s.l4, sum)) != 0xffff) {
        c_[C_dropRxBadChecksum]++;
        return;
      }
    }
    if (tcp && head_.count && CanMerge(p, ver, s)) {
      if (s.payload < head_.tcp.payload) head_.closed = true;
      if (s.flags & TCP_PSH) {
        head_.psh = true;
        head_.closed = true;
      }
      wiov_[2 + head_.count] = iovec{const_cast<uint8_t*>(p + s.hl), s.payload};
      head_.count++;
      head_.total += s.payload;
      head_.nextSeq += static_cast<uint32_t>(s.payload);
      c_[C_rxCoalesced]++;
      return;
    }
    FlushHead();
    bool candidate = tcp && s.payload > 0 && (s.flags & ~TCP_PSH) == TCP_ACK && !(ver == 4 && s.l4 != 20);
    if (candidate && !(s.flags & TCP_PSH)) {
      head_ = Head{};
      head_.first = p;
      head_.len = len;
      head_.ver = ver;
      head_.tcp = s;
      head_.count = 1;
      head_.total = s.payload;
      head_.nextSeq = s.seq + static_cast<uint32_t>(s.payload);
      wiov_[2] = iovec{const_cast<uint8_t*>(p + s.hl), s.payload};
      return;
    }
    WriteSingle(p, len, tcp ? VIRTIO_NET_HDR_F_DATA_VALID : 0);
  }

  void FlushHead() {
    Head& h = head_;
    if (h.count == 0) return;
    if (h.count == 1) {
      WriteSingle(h.first, h.len, VIRTIO_NET_HDR_F_DATA_VALID);
      h.count = 0;
      return;
    }
    const Tcp& s = h.tcp;
    memcpy(superHdr_, h.first, s.hl);
    uint8_t* ip = superHdr_;
    size_t total = s.hl + h.total;
    if (h.ver == 4) {
      PutBe16(ip + 2, static_cast<uint16_t>(total));
      Ipv4HeaderChecksum(ip, s.l4);
    } else {
      PutBe16(ip + 4, static_cast<uint16_t>(total - 40));
    }
    uint8_t* th = ip + s.l4;
    if (h.psh) th[13] |= TCP_PSH;
    // CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum, not complemented.
    th[16] = th[17] = 0;
    PutNative16(th + 16, CsumFold(PseudoSum(ip, h.ver, static_cast<uint32_t>(total - s.l4), IPPROTO_TCP)));
    virtio_net_hdr vh{};
    vh.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    vh.gso_type = h.ver == 4 ? VIRTIO_NET_HDR_GSO_TCPV4 : VIRTIO_NET_HDR_GSO_TCPV6;
    vh.hdr_len = htole16(static_cast<uint16_t>(s.hl));
    vh.gso_size = htole16(static_cast<uint16_t>(s.payload));
    vh.csum_start = htole16(static_cast<uint16_t>(s.l4));
    vh.csum_offset = htole16(16);
    wiov_[0] = iovec{&vh, kVnetLen};
    wiov_[1] = iovec{superHdr_, s.hl};
    Writev(wiov_, 2 + h.count, h.count, total);
    h.count = 0;
  }

  void WriteSingle(const uint8_t* p, size_t len, uint8_t flags) {
    virtio_net_hdr vh{};
    vh.flags = flags;
    iovec v[2] = {{&vh, kVnetLen}, {const_cast<uint8_t*>(p), len}};
    Writev(v, 2, 1, len);
  }

  void WritePlain(const uint8_t* p, size_t len) {
    iovec v[1] = {{const_cast<uint8_t*>(p), len}};
    Writev(v, 1, 1, len);
  }

  void Writev(iovec* v, int n, int packets, size_t bytes) {
    c_[C_rxTunWrites]++;
    ssize_t r;
    do r = writev(tun_, v, n);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
      c_[C_lastErrno] = static_cast<uint64_t>(errno);
      c_[C_dropRxTunWriteError] += static_cast<uint64_t>(packets);
      return;
    }
    c_[C_rxPackets] += static_cast<uint64_t>(packets);
    c_[C_rxBytes] += bytes;
  }

  void Publish() {
    for (int i = 0; i < C_COUNT; i++) sh_->counters[i].store(c_[i], std::memory_order_relaxed);
  }

  const Config cfg_;
  Shared* sh_;
  int tun_, sock_, ep_, ev_;
  bool vnet_;
  uint64_t c_[C_COUNT];

  std::vector<uint8_t> txBufs_;
  mmsghdr mmsg_[kMsgs];
  Meta meta_[kMsgs];
  struct alignas(cmsghdr) CmsgBuf {
    char buf[CMSG_SPACE(sizeof(uint16_t))];
  } cmsgs_[kMsgs];
  iovec iov_[kIov];
  uint8_t hdrPool_[kHdrPool];
  int nmsg_ = 0, niov_ = 0;
  size_t nhdr_ = 0;

  std::vector<uint8_t> rxBufs_;
  std::vector<mmsghdr> rmsgs_;
  std::vector<iovec> riov_;
  std::vector<sockaddr_storage> rnames_;
  std::vector<char> rcmsg_;
  Head head_;
  iovec wiov_[2 + kMaxCoalesce];
  uint8_t superHdr_[128];
};

// ---------------------------------------------------------------------------------------
// The tunnel object behind the JS handle.

Napi::Error SysError(Napi::Env env, int err, const char* syscall, const std::string& what) {
  char name[64];
  uv_err_name_r(-err, name, sizeof(name));
  std::string msg = std::string(syscall) + " failed: " + strerror(err);
  if (!what.empty()) msg += " (" + what + ")";
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, name));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, syscall));
  if (!what.empty()) e.Set("path", Napi::String::New(env, what));
  return e;
}

class Tunnel {
 public:
  explicit Tunnel(Config cfg) : cfg_(std::move(cfg)) {}
  ~Tunnel() {
    Stop();
    delete shared_.table.load();
    for (auto& r : retired_) delete r.first;
  }

  // Opens the TUN and the socket in the calling thread's network namespace.
  void Open(Napi::Env env) {
    tunFd_ = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
    if (tunFd_ < 0) throw SysError(env, errno, "open", "/dev/net/tun");
    ifreq ifr{};
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI | (cfg_.offload ? IFF_VNET_HDR : 0);
    memcpy(ifr.ifr_name, cfg_.tunName.data(), cfg_.tunName.size());
    if (ioctl(tunFd_, TUNSETIFF, &ifr) < 0) throw Fail(env, errno, "ioctl(TUNSETIFF)", cfg_.tunName);
    if (cfg_.offload) {
      int hsz = static_cast<int>(kVnetLen);
      if (ioctl(tunFd_, TUNSETVNETHDRSZ, &hsz) < 0) throw Fail(env, errno, "ioctl(TUNSETVNETHDRSZ)", cfg_.tunName);
      int le = 1;
      ioctl(tunFd_, TUNSETVNETLE, &le);  // little-endian vnet headers; x86 uses LE anyway
      unsigned off = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
      if (ioctl(tunFd_, TUNSETOFFLOAD, off) < 0) throw Fail(env, errno, "ioctl(TUNSETOFFLOAD)", cfg_.tunName);
    }
    int af = cfg_.family == 4 ? AF_INET : AF_INET6;
    sockFd_ = socket(af, SOCK_DGRAM | SOCK_CLOEXEC, IPPROTO_UDP);
    if (sockFd_ < 0) throw Fail(env, errno, "socket", "");
    int one = 1;
    if (af == AF_INET6) setsockopt(sockFd_, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    // Big buffers (FORCE as root; otherwise capped by net.core.[rw]mem_max).
    if (setsockopt(sockFd_, SOL_SOCKET, SO_SNDBUFFORCE, &cfg_.sndbuf, sizeof(int)) < 0)
      setsockopt(sockFd_, SOL_SOCKET, SO_SNDBUF, &cfg_.sndbuf, sizeof(int));
    if (setsockopt(sockFd_, SOL_SOCKET, SO_RCVBUFFORCE, &cfg_.rcvbuf, sizeof(int)) < 0)
      setsockopt(sockFd_, SOL_SOCKET, SO_RCVBUF, &cfg_.rcvbuf, sizeof(int));
    // Sends block at most 10 ms on a full send buffer (then the batch is shed and counted);
    // receives use MSG_DONTWAIT.
    timeval tv{0, 10000};
    setsockopt(sockFd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (cfg_.udpOffload) gro_ = setsockopt(sockFd_, IPPROTO_UDP, UDP_GRO, &one, sizeof(one)) == 0;
    else shared_.udpGso.store(false);
    sockaddr_storage ss{};
    socklen_t sl;
    if (af == AF_INET) {
      auto* s = reinterpret_cast<sockaddr_in*>(&ss);
      s->sin_family = AF_INET;
      s->sin_port = htons(cfg_.port);
      memcpy(&s->sin_addr, cfg_.local, 4);
      sl = sizeof(sockaddr_in);
    } else {
      auto* s = reinterpret_cast<sockaddr_in6*>(&ss);
      s->sin6_family = AF_INET6;
      s->sin6_port = htons(cfg_.port);
      memcpy(&s->sin6_addr, cfg_.local, 16);
      sl = sizeof(sockaddr_in6);
    }
    if (bind(sockFd_, reinterpret_cast<sockaddr*>(&ss), sl) < 0) throw Fail(env, errno, "bind", "");
  }

  void Start(Napi::Env env) {
    if (stopped_) throw Napi::Error::New(env, "the tunnel was stopped; open a new one");
    if (running_) return;
    epFd_ = epoll_create1(EPOLL_CLOEXEC);
    if (epFd_ < 0) throw SysError(env, errno, "epoll_create1", "");
    evFd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (evFd_ < 0) throw Fail(env, errno, "eventfd", "", false);
    for (int fd : {tunFd_, sockFd_, evFd_}) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.fd = fd;
      if (epoll_ctl(epFd_, EPOLL_CTL_ADD, fd, &ev) < 0) throw Fail(env, errno, "epoll_ctl", "", false);
    }
    loop_ = std::make_unique<Loop>(cfg_, &shared_, tunFd_, sockFd_, epFd_, evFd_);
    // The thread blocks every signal: they are the process's (Node's) business.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&thread_, nullptr, &Tunnel::ThreadMain, this);
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    if (rc != 0) {
      loop_.reset();
      throw Fail(env, rc, "pthread_create", "", false);
    }
    running_ = true;
  }

  // Joins the thread and closes every fd. Idempotent.
  void Stop() {
    if (running_) {
      shared_.stop.store(true, std::memory_order_release);
      Wake();
      pthread_join(thread_, nullptr);
      running_ = false;
      loop_.reset();
    }
    stopped_ = true;
    if (tunFd_ >= 0 && cfg_.offload) ioctl(tunFd_, TUNSETOFFLOAD, 0u);  // leave the device as links.ensure made it
    CloseAll();
    shared_.tid.store(0);
    ReclaimAll();
  }

  void SetPeers(Napi::Env env, const uint8_t* buf, size_t n) {
    std::string err;
    std::unique_ptr<Table> t = ParseTable(buf, n, cfg_.family, &err);
    if (!t) throw Napi::TypeError::New(env, err);
    const Table* old = shared_.table.exchange(t.release(), std::memory_order_seq_cst);
    uint64_t g = shared_.gen.load(std::memory_order_seq_cst);
    swaps_++;
    if (old) retired_.push_back({old, g});
    if (running_) {
      Wake();
      Reclaim();
    } else {
      ReclaimAll();
    }
  }

  Napi::Object Stats(Napi::Env env) {
    Reclaim();
    Napi::Object o = Napi::Object::New(env);
    for (int i = 0; i < C_COUNT; i++) {
      uint64_t v = shared_.counters[i].load(std::memory_order_relaxed);
      if (i == C_tableSwaps) v = swaps_;
      o.Set(kCounterNames[i], Napi::Number::New(env, static_cast<double>(v)));
    }
    return o;
  }

  Napi::Object Info(Napi::Env env) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("running", Napi::Boolean::New(env, running_));
    o.Set("stopped", Napi::Boolean::New(env, stopped_));
    o.Set("threadId", Napi::Number::New(env, shared_.tid.load()));
    o.Set("offload", Napi::Boolean::New(env, cfg_.offload));
    o.Set("udpOffload", Napi::Boolean::New(env, cfg_.udpOffload));
    o.Set("udpGro", Napi::Boolean::New(env, gro_));
    o.Set("udpGso", Napi::Boolean::New(env, shared_.udpGso.load()));
    o.Set("batch", Napi::Number::New(env, cfg_.batch));
    o.Set("mtu", Napi::Number::New(env, cfg_.mtu));
    const Table* t = shared_.table.load();
    o.Set("entries", Napi::Number::New(env, t ? static_cast<double>(t->entries) : 0));
    o.Set("peers", Napi::Number::New(env, t ? static_cast<double>(t->peers.size()) : 0));
    return o;
  }

  bool running() const { return running_; }

 private:
  static void* ThreadMain(void* arg) {
    auto* self = static_cast<Tunnel*>(arg);
    std::string name = "pn-udp:" + self->cfg_.tunName;
    name.resize(std::min<size_t>(name.size(), 15));
    pthread_setname_np(pthread_self(), name.c_str());
    self->loop_->Run();
    return nullptr;
  }

  Napi::Error Fail(Napi::Env env, int err, const char* sys, const std::string& what, bool close = true) {
    if (close) CloseAll();
    return SysError(env, err, sys, what);
  }

  void Wake() {
    if (evFd_ >= 0) {
      uint64_t one = 1;
      if (write(evFd_, &one, sizeof(one)) < 0) { /* counter saturated: already awake */ }
    }
  }

  void CloseAll() {
    for (int* fd : {&tunFd_, &sockFd_, &epFd_, &evFd_}) {
      if (*fd >= 0) close(*fd);
      *fd = -1;
    }
  }

  // Frees retired tables the loop can no longer hold (it passed a quiescent point since).
  void Reclaim() {
    uint64_t now = shared_.gen.load(std::memory_order_seq_cst);
    auto keep = std::remove_if(retired_.begin(), retired_.end(), [&](const std::pair<const Table*, uint64_t>& r) {
      if (now > r.second) {
        delete r.first;
        return true;
      }
      return false;
    });
    retired_.erase(keep, retired_.end());
  }
  void ReclaimAll() {
    for (auto& r : retired_) delete r.first;
    retired_.clear();
  }

  Config cfg_;
  Shared shared_;
  int tunFd_ = -1, sockFd_ = -1, epFd_ = -1, evFd_ = -1;
  bool gro_ = false;
  bool running_ = false, stopped_ = false;
  pthread_t thread_{};
  std::unique_ptr<Loop> loop_;
  std::vector<std::pair<const Table*, uint64_t>> retired_;
  uint64_t swaps_ = 0;
};

// ---------------------------------------------------------------------------------------
// JS glue: udpTunnelOpen(opts) -> handle { start, stop, setPeers, stats, info }.
// The handle holds the Tunnel through an External; while the thread runs, a strong
// reference keeps the handle alive (a running tunnel is never stopped by the GC); an env
// cleanup hook stops it if the environment (a worker thread) goes away.

struct Holder {
  std::unique_ptr<Tunnel> tunnel;
  Napi::ObjectReference self;
  napi_env env = nullptr;
  bool hooked = false;
};

void CleanupHook(void* arg) {
  auto* h = static_cast<Holder*>(arg);
  h->hooked = false;
  if (h->tunnel) h->tunnel->Stop();
  if (!h->self.IsEmpty()) h->self.Reset();
}

Holder* HolderOf(const Napi::CallbackInfo& info) { return static_cast<Holder*>(info.Data()); }

int OptInt(Napi::Object o, const char* key, int def, int min, int max) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return def;
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string(key) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (d != static_cast<int>(d) || d < min || d > max)
    throw Napi::TypeError::New(o.Env(), std::string(key) + " must be an integer in " + std::to_string(min) + ".." + std::to_string(max));
  return static_cast<int>(d);
}

Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "options must be an object");
  Napi::Object o = info[0].As<Napi::Object>();
  Config cfg;
  Napi::Value name = o.Get("tunName");
  if (!name.IsString()) throw Napi::TypeError::New(env, "tunName must be a string");
  cfg.tunName = name.As<Napi::String>().Utf8Value();
  if (cfg.tunName.empty() || cfg.tunName.size() >= IFNAMSIZ) throw Napi::TypeError::New(env, "tunName must be 1-15 characters");
  Napi::Value local = o.Get("local");
  if (!local.IsBuffer()) throw Napi::TypeError::New(env, "local must be a Buffer of 4 or 16 bytes");
  auto lb = local.As<Napi::Buffer<uint8_t>>();
  if (lb.Length() != 4 && lb.Length() != 16) throw Napi::TypeError::New(env, "local must be a Buffer of 4 or 16 bytes");
  cfg.family = lb.Length() == 4 ? 4 : 6;
  memcpy(cfg.local, lb.Data(), lb.Length());
  cfg.port = static_cast<uint16_t>(OptInt(o, "port", 8285, 1, 65535));
  cfg.mtu = OptInt(o, "mtu", 1472, 68, 65535);
  cfg.batch = OptInt(o, "batch", 32, 1, 256);
  cfg.sndbuf = OptInt(o, "sndbuf", 4 << 20, 4096, 1 << 30);
  cfg.rcvbuf = OptInt(o, "rcvbuf", 4 << 20, 4096, 1 << 30);
  Napi::Value off = o.Get("offload");
  cfg.offload = off.IsUndefined() ? true : off.ToBoolean().Value();
  Napi::Value uoff = o.Get("udpOffload");
  cfg.udpOffload = uoff.IsUndefined() ? true : uoff.ToBoolean().Value();

  auto* holder = new Holder();
  holder->tunnel = std::make_unique<Tunnel>(cfg);
  try {
    holder->tunnel->Open(env);
  } catch (...) {
    delete holder;
    throw;
  }
  Napi::Object handle = Napi::Object::New(env);
  auto ext = Napi::External<Holder>::New(env, holder, [](Napi::Env e, Holder* h) {
    if (h->hooked) napi_remove_env_cleanup_hook(e, CleanupHook, h);
    delete h;  // ~Tunnel stops (a handle is only collected once stopped) and closes
  });
  handle.Set("_holder", ext);
  holder->env = env;
  if (napi_add_env_cleanup_hook(env, CleanupHook, holder) == napi_ok) holder->hooked = true;
  auto method = [&](const char* n, Napi::Function::Callback cb) { handle.Set(n, Napi::Function::New(env, cb, n, holder)); };
  method("start", [](const Napi::CallbackInfo& i) -> Napi::Value {
    Holder* h = HolderOf(i);
    bool was = h->tunnel->running();
    h->tunnel->Start(i.Env());
    if (!was && h->tunnel->running()) h->self = Napi::Persistent(i.This().As<Napi::Object>());
    return i.Env().Undefined();
  });
  method("stop", [](const Napi::CallbackInfo& i) -> Napi::Value {
    Holder* h = HolderOf(i);
    h->tunnel->Stop();
    if (!h->self.IsEmpty()) h->self.Reset();
    return i.Env().Undefined();
  });
  method("setPeers", [](const Napi::CallbackInfo& i) -> Napi::Value {
    if (i.Length() < 1 || !i[0].IsBuffer()) throw Napi::TypeError::New(i.Env(), "setPeers needs a Buffer");
    auto b = i[0].As<Napi::Buffer<uint8_t>>();
    HolderOf(i)->tunnel->SetPeers(i.Env(), b.Data(), b.Length());
    return i.Env().Undefined();
  });
  method("stats", [](const Napi::CallbackInfo& i) -> Napi::Value { return HolderOf(i)->tunnel->Stats(i.Env()); });
  method("info", [](const Napi::CallbackInfo& i) -> Napi::Value { return HolderOf(i)->tunnel->Info(i.Env()); });
  return handle;
}

}  // namespace

void InitUdpTunnel(Napi::Env env, Napi::Object exports) {
  exports.Set("udpTunnelOpen", Napi::Function::New(env, Open, "udpTunnelOpen"));
}

}  // namespace podnet
