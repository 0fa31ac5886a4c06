/* podnet-probe: sends one marked probe packet for `podnet trace --live` and reports what
 * came back.
 *
 *   podnet-probe [--netns PATH] --family 4|6 --proto tcp|udp|icmp --dst ADDR [--dport N]
 *                [--src ADDR] [--sport N] [--dscp N] [--size N] [--timeout-ms N]
 *                [--payload TEXT]
 *
 * The packet carries the trace's marker: DSCP N in the IP header (IP_TOS = N << 2, or
 * IPV6_TCLASS), from source port (TCP / UDP) or echo id (ICMP) --sport when given, so the
 * nftrace rule on each node selects it and nothing else.
 *
 *   tcp   non-blocking connect, then poll: connected | refused | timeout | unreachable.
 *         The socket is closed with SO_LINGER 0 (a RST, no data, nothing left behind).
 *   udp   one datagram ("podnet-trace ..." padded to --size bytes of IP packet) on a
 *         connected socket with IP_RECVERR: replied (an answer came) | refused (ICMP port
 *         unreachable) | unreachable (ICMP host / net unreachable) | sent (nothing came
 *         back: UDP cannot tell more).
 *   icmp  one echo request with id --sport (a ping socket when net.ipv4.ping_group_range
 *         allows it, else a raw socket, which needs CAP_NET_RAW): replied | unreachable |
 *         timeout.
 *
 * DF is set on UDP and ICMP probes (IP_PMTUDISC_DO): a packet larger than the path MTU is
 * reported as an error with the MTU rather than fragmented. --netns enters that network
 * namespace (a /run/netns/NAME or /proc/PID/ns/net path) before anything else.
 *
 * Output: one JSON line on stdout,
 *   {"result":"connected","rttMs":0.123,"sport":40000,"errno":"ECONNREFUSED","message":"...",
 *    "from":"10.0.0.1","icmpType":3,"icmpCode":3,"mtu":1400,"bytes":64}
 * (only "result" and "sport" are always present). Exit status: 0 when the probe was sent
 * (whatever came back), 1 when it could not be sent (the JSON line says why), 2 on bad
 * arguments (a message on stderr, no JSON).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/errqueue.h>
#include <linux/icmp.h>
#include <netdb.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define PROBE_MAX_SIZE 65535
#define PAYLOAD_MAX 256
#define PAD_CHAR '.'

enum proto { P_NONE, P_TCP, P_UDP, P_ICMP };

struct opts {
  const char *netns;
  int family; /* 4 or 6 */
  enum proto proto;
  const char *dst_text;
  const char *src_text;
  struct sockaddr_storage dst;
  socklen_t dst_len;
  struct sockaddr_storage src;
  socklen_t src_len;
  long dport; /* -1: not given */
  long sport;
  long dscp;
  long size; /* -1: not given */
  long timeout_ms;
  const char *payload;
};

struct report {
  const char *result;
  double rtt_ms; /* < 0: none */
  long sport;
  int err; /* 0: none */
  char message[320];
  char from[INET6_ADDRSTRLEN]; /* who sent the ICMP error, "" when none */
  int icmp_type;               /* -1: none */
  int icmp_code;
  long mtu;   /* 0: none */
  long bytes; /* -1: none */
};

__attribute__((noreturn)) static void usage(void) {
  fprintf(stderr,
          "usage: podnet-probe [--netns PATH] --family 4|6 --proto tcp|udp|icmp --dst ADDR [--dport N]\n"
          "                    [--src ADDR] [--sport N] [--dscp N] [--size N] [--timeout-ms N] [--payload TEXT]\n");
  exit(2);
}

/* A bad argument: one line on stderr, exit 2. */
__attribute__((format(printf, 1, 2), noreturn)) static void bad(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "podnet-probe: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  exit(2);
}

/* A decimal integer, digits only (no sign, no spaces), within [min, max]. */
static long parse_num(const char *flag, const char *text, long min, long max) {
  char range[64];
  snprintf(range, sizeof(range), "%ld to %ld", min, max);
  if (!text[0] || strspn(text, "0123456789") != strlen(text) || strlen(text) > 9) {
    fprintf(stderr, "podnet-probe: %s must be an integer from %s, got \"%s\"\n", flag, range, text);
    exit(2);
  }
  long v = strtol(text, NULL, 10);
  if (v < min || v > max) {
    fprintf(stderr, "podnet-probe: %s must be an integer from %s, got %ld\n", flag, range, v);
    exit(2);
  }
  return v;
}

/* A numeric address of the given family (strictly dotted-quad for IPv4; IPv6 may carry a
 * %scope), into `ss`. */
static void parse_addr(const char *flag, const char *text, int family, struct sockaddr_storage *ss, socklen_t *len) {
  memset(ss, 0, sizeof(*ss));
  if (family == 4) {
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    sin->sin_family = AF_INET;
    *len = sizeof(*sin);
    if (inet_pton(AF_INET, text, &sin->sin_addr) == 1) return;
  } else if (!strchr(text, '%')) {
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    sin6->sin6_family = AF_INET6;
    *len = sizeof(*sin6);
    if (inet_pton(AF_INET6, text, &sin6->sin6_addr) == 1) return;
  } else {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_INET6;
    hints.ai_flags = AI_NUMERICHOST;
    hints.ai_socktype = SOCK_DGRAM;
    if (getaddrinfo(text, NULL, &hints, &res) == 0 && res && res->ai_addrlen <= sizeof(*ss)) {
      memcpy(ss, res->ai_addr, res->ai_addrlen);
      *len = res->ai_addrlen;
      freeaddrinfo(res);
      return;
    }
    if (res) freeaddrinfo(res);
  }
  bad("%s \"%s\" is not an IPv%d address", flag, text, family);
}

static void set_port(struct sockaddr_storage *ss, int port) {
  if (ss->ss_family == AF_INET)
    ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
  else
    ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
}

static int get_port(int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) return -1;
  if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
  return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* ---- JSON output */

static void json_str(const char *s) {
  putchar('"');
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\')
      printf("\\%c", *p);
    else if (*p < 0x20)
      printf("\\u%04x", *p);
    else
      putchar(*p);
  }
  putchar('"');
}

static void print_report(const struct report *r) {
  printf("{\"result\":");
  json_str(r->result);
  if (r->rtt_ms >= 0) printf(",\"rttMs\":%.3f", r->rtt_ms);
  printf(",\"sport\":%ld", r->sport);
  if (r->err) {
    const char *name = strerrorname_np(r->err);
    printf(",\"errno\":");
    if (name)
      json_str(name);
    else
      printf("\"%d\"", r->err);
  }
  if (r->message[0]) {
    printf(",\"message\":");
    json_str(r->message);
  }
  if (r->from[0]) {
    printf(",\"from\":");
    json_str(r->from);
  }
  if (r->icmp_type >= 0) printf(",\"icmpType\":%d,\"icmpCode\":%d", r->icmp_type, r->icmp_code);
  if (r->mtu > 0) printf(",\"mtu\":%ld", r->mtu);
  if (r->bytes >= 0) printf(",\"bytes\":%ld", r->bytes);
  printf("}\n");
  fflush(stdout);
}

/* A failure before the probe left: report it and exit 1. */
__attribute__((noreturn)) static void fail(struct report *r, const char *what, int err) {
  r->result = "error";
  r->err = err;
  snprintf(r->message, sizeof(r->message), "%s: %s", what, strerror(err));
  print_report(r);
  exit(1);
}

/* ---- results */

static int is_unreachable(int err) {
  return err == EHOSTUNREACH || err == ENETUNREACH || err == EHOSTDOWN || err == ENONET || err == ENETDOWN;
}

/* Classifies an errno that ended the probe into the report. */
static void classify(struct report *r, const struct opts *o, int err) {
  r->err = err;
  if (err == ECONNREFUSED) {
    r->result = "refused";
    snprintf(r->message, sizeof(r->message), "%s refused the connection to port %ld", o->dst_text, o->dport);
  } else if (is_unreachable(err)) {
    r->result = "unreachable";
    snprintf(r->message, sizeof(r->message), "%s is unreachable: %s", o->dst_text, strerror(err));
  } else if (err == ETIMEDOUT) {
    r->result = "timeout";
    snprintf(r->message, sizeof(r->message), "no answer from %s", o->dst_text);
  } else if (err == EMSGSIZE) {
    r->result = "error";
    if (r->mtu > 0)
      snprintf(r->message, sizeof(r->message), "the packet is larger than the path MTU %ld (DF is set)", r->mtu);
    else
      snprintf(r->message, sizeof(r->message), "the packet is larger than the path MTU (DF is set)");
  } else if (err == EPERM || err == EACCES) {
    r->result = "error";
    snprintf(r->message, sizeof(r->message), "a local firewall rule refused the packet: %s", strerror(err));
  } else {
    r->result = "error";
    snprintf(r->message, sizeof(r->message), "%s", strerror(err));
  }
  if (r->from[0] && r->result[0] != 'e') {
    size_t n = strlen(r->message);
    snprintf(r->message + n, sizeof(r->message) - n, " (ICMP from %s)", r->from);
  }
}

/* Reads one queued ICMP / local error (IP_RECVERR) into the report. Returns its errno, 0 if none. */
static int read_errqueue(int fd, struct report *r) {
  char data[256];
  char control[512];
  struct sockaddr_storage name;
  struct iovec iov = {.iov_base = data, .iov_len = sizeof(data)};
  struct msghdr msg;
  memset(&msg, 0, sizeof(msg));
  msg.msg_name = &name;
  msg.msg_namelen = sizeof(name);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  if (recvmsg(fd, &msg, MSG_ERRQUEUE | MSG_DONTWAIT) < 0) return 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    int v4 = c->cmsg_level == SOL_IP && c->cmsg_type == IP_RECVERR;
    int v6 = c->cmsg_level == SOL_IPV6 && c->cmsg_type == IPV6_RECVERR;
    if (!v4 && !v6) continue;
    struct sock_extended_err ee;
    memcpy(&ee, CMSG_DATA(c), sizeof(ee));
    if (ee.ee_origin == SO_EE_ORIGIN_ICMP || ee.ee_origin == SO_EE_ORIGIN_ICMP6) {
      r->icmp_type = ee.ee_type;
      r->icmp_code = ee.ee_code;
      const struct sockaddr *off = SO_EE_OFFENDER((struct sock_extended_err *)CMSG_DATA(c));
      if (off->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)off)->sin_addr, r->from, sizeof(r->from));
      else if (off->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)off)->sin6_addr, r->from, sizeof(r->from));
    }
    if (ee.ee_errno == EMSGSIZE && ee.ee_info > 0) r->mtu = ee.ee_info;
    return (int)ee.ee_errno;
  }
  return 0;
}

/* The error a POLLERR announced: a queued ICMP / local error, else the socket's SO_ERROR; 0 if none. */
static int pending_error(int fd, struct report *r) {
  int err = read_errqueue(fd, r);
  if (!err) {
    socklen_t l = sizeof(err);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l);
  }
  return err;
}

/* ---- socket setup */

static void set_marker(int fd, const struct opts *o, struct report *r, int dont_fragment) {
  int one = 1;
  int tos = (int)(o->dscp << 2);
  if (o->family == 4) {
    if (setsockopt(fd, IPPROTO_IP, IP_TOS, &tos, sizeof(tos)) < 0) fail(r, "setsockopt IP_TOS", errno);
    if (setsockopt(fd, IPPROTO_IP, IP_RECVERR, &one, sizeof(one)) < 0) fail(r, "setsockopt IP_RECVERR", errno);
    int pmtu = IP_PMTUDISC_DO;
    if (dont_fragment && setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &pmtu, sizeof(pmtu)) < 0)
      fail(r, "setsockopt IP_MTU_DISCOVER", errno);
  } else {
    if (setsockopt(fd, IPPROTO_IPV6, IPV6_TCLASS, &tos, sizeof(tos)) < 0) fail(r, "setsockopt IPV6_TCLASS", errno);
    if (setsockopt(fd, IPPROTO_IPV6, IPV6_RECVERR, &one, sizeof(one)) < 0) fail(r, "setsockopt IPV6_RECVERR", errno);
    int pmtu = IPV6_PMTUDISC_DO;
    if (dont_fragment && setsockopt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &pmtu, sizeof(pmtu)) < 0)
      fail(r, "setsockopt IPV6_MTU_DISCOVER", errno);
  }
}

/* Binds to --src / --sport when either is given. */
static void bind_local(int fd, const struct opts *o, struct report *r, long port) {
  if (!o->src_text && port == 0) return;
  struct sockaddr_storage ss;
  socklen_t len;
  if (o->src_text) {
    ss = o->src;
    len = o->src_len;
  } else {
    memset(&ss, 0, sizeof(ss));
    ss.ss_family = o->family == 4 ? AF_INET : AF_INET6;
    len = o->family == 4 ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
  }
  set_port(&ss, (int)port);
  if (bind(fd, (struct sockaddr *)&ss, len) < 0) {
    char what[128];
    snprintf(what, sizeof(what), "bind to %s port %ld", o->src_text ? o->src_text : "any address", port);
    fail(r, what, errno);
  }
}

static long path_mtu(int fd, int family) {
  int mtu = 0;
  socklen_t len = sizeof(mtu);
  if (family == 4 ? getsockopt(fd, IPPROTO_IP, IP_MTU, &mtu, &len) : getsockopt(fd, IPPROTO_IPV6, IPV6_MTU, &mtu, &len)) return 0;
  return mtu;
}

/* Waits for `events` on fd until the deadline; returns revents, 0 on timeout. */
static int wait_fd(int fd, short events, double deadline) {
  for (;;) {
    double left = deadline - now_ms();
    if (left <= 0) return 0;
    struct pollfd p = {.fd = fd, .events = events, .revents = 0};
    int n = poll(&p, 1, (int)(left + 0.999));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return POLLERR;
    if (n == 0) continue; /* re-check the clock */
    return p.revents;
  }
}

/*
 * Waits for a reply on fd: 1 when there is something to read, 0 when the wait is over — the
 * deadline passed (r keeps its timeout result) or a queued error (ICMP unreachable, SO_ERROR)
 * was classified into r.
 */
static int wait_reply(int fd, double deadline, double t0, struct report *r, const struct opts *o) {
  for (;;) {
    int rev = wait_fd(fd, POLLIN, deadline);
    if (rev == 0) return 0;
    if (rev & POLLERR) {
      int err = pending_error(fd, r);
      if (!err) continue;
      r->rtt_ms = now_ms() - t0;
      classify(r, o, err);
      return 0;
    }
    if (rev & POLLIN) return 1;
  }
}

/* Fills buf with the payload text padded with PAD_CHAR to len bytes (truncated if longer). */
static void fill_payload(char *buf, size_t len, const char *text) {
  size_t n = strlen(text);
  if (n > len) n = len;
  memcpy(buf, text, n);
  memset(buf + n, PAD_CHAR, len - n);
}

static size_t ip_header_len(int family) { return family == 4 ? 20 : 40; }

/* ---- the probes; each returns 1 when the packet was sent */

static int probe_tcp(const struct opts *o, struct report *r) {
  int af = o->family == 4 ? AF_INET : AF_INET6;
  int fd = socket(af, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) fail(r, "socket", errno);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  struct linger lg = {.l_onoff = 1, .l_linger = 0};
  if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) < 0) fail(r, "setsockopt SO_LINGER", errno);
  set_marker(fd, o, r, 0);
  bind_local(fd, o, r, o->sport);

  struct sockaddr_storage dst = o->dst;
  set_port(&dst, (int)o->dport);
  double t0 = now_ms();
  int sent = 1;
  if (connect(fd, (struct sockaddr *)&dst, o->dst_len) == 0) {
    r->result = "connected";
    r->rtt_ms = now_ms() - t0;
  } else if (errno == EINPROGRESS) {
    r->sport = get_port(fd);
    int rev = wait_fd(fd, POLLOUT, t0 + (double)o->timeout_ms);
    if (rev == 0) {
      r->result = "timeout";
      snprintf(r->message, sizeof(r->message), "no answer from %s port %ld within %ld ms", o->dst_text, o->dport, o->timeout_ms);
    } else {
      int err = 0;
      socklen_t len = sizeof(err);
      if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
      r->rtt_ms = now_ms() - t0;
      if (err == 0) {
        r->result = "connected";
      } else {
        read_errqueue(fd, r);
        classify(r, o, err);
      }
    }
  } else {
    /* Refused before anything left: no route, address not available, a local rule. */
    int err = errno;
    sent = 0;
    classify(r, o, err);
    if (strcmp(r->result, "refused") == 0) sent = 1; /* loopback RST: a packet did go out */
  }
  int port = get_port(fd);
  if (port > 0) r->sport = port;
  close(fd); /* SO_LINGER 0: RST, no TIME_WAIT */
  return sent;
}

static int probe_udp(const struct opts *o, struct report *r) {
  int af = o->family == 4 ? AF_INET : AF_INET6;
  int fd = socket(af, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fail(r, "socket", errno);
  set_marker(fd, o, r, 1);
  bind_local(fd, o, r, o->sport);
  struct sockaddr_storage dst = o->dst;
  set_port(&dst, (int)o->dport);
  if (connect(fd, (struct sockaddr *)&dst, o->dst_len) < 0) {
    int err = errno;
    classify(r, o, err);
    close(fd);
    return 0;
  }
  r->sport = get_port(fd);

  size_t hdr = ip_header_len(o->family) + 8;
  size_t len = o->size >= 0 ? (size_t)o->size - hdr : strlen(o->payload);
  char *buf = malloc(len ? len : 1);
  if (!buf) fail(r, "malloc", ENOMEM);
  fill_payload(buf, len, o->payload);
  double t0 = now_ms();
  if (send(fd, buf, len, 0) < 0) {
    int err = errno;
    if (err == EMSGSIZE) r->mtu = path_mtu(fd, o->family);
    classify(r, o, err);
    free(buf);
    close(fd);
    return 0;
  }
  free(buf);
  double deadline = t0 + (double)o->timeout_ms;
  r->result = "sent";
  snprintf(r->message, sizeof(r->message), "sent; no answer within %ld ms (UDP cannot tell whether it was delivered)", o->timeout_ms);
  while (wait_reply(fd, deadline, t0, r, o)) {
    char reply[2048];
    ssize_t n = recv(fd, reply, sizeof(reply), MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    r->rtt_ms = now_ms() - t0;
    if (n < 0) {
      classify(r, o, errno);
    } else {
      r->result = "replied";
      r->bytes = n;
      snprintf(r->message, sizeof(r->message), "%s answered with %zd bytes", o->dst_text, n);
    }
    break;
  }
  close(fd);
  return 1;
}

/* The Internet checksum (RFC 1071). */
static uint16_t inet_cksum(const void *data, size_t len) {
  const uint8_t *p = data;
  uint32_t sum = 0;
  for (; len > 1; len -= 2, p += 2) sum += (uint32_t)((p[0] << 8) | p[1]);
  if (len) sum += (uint32_t)(p[0] << 8);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return htons((uint16_t)~sum);
}

static int probe_icmp(const struct opts *o, struct report *r) {
  int af = o->family == 4 ? AF_INET : AF_INET6;
  int proto = o->family == 4 ? IPPROTO_ICMP : IPPROTO_ICMPV6;
  int raw = 0;
  int fd = socket(af, SOCK_DGRAM | SOCK_CLOEXEC, proto);
  if (fd < 0 && (errno == EACCES || errno == EPERM)) {
    raw = 1;
    fd = socket(af, SOCK_RAW | SOCK_CLOEXEC, proto);
    if (fd < 0 && (errno == EPERM || errno == EACCES))
      fail(r, "ICMP socket (net.ipv4.ping_group_range excludes this group, and a raw socket needs CAP_NET_RAW)", errno);
  }
  if (fd < 0) fail(r, "ICMP socket", errno);
  set_marker(fd, o, r, 1);
  uint8_t type_request = o->family == 4 ? ICMP_ECHO : ICMP6_ECHO_REQUEST;
  uint8_t type_reply = o->family == 4 ? ICMP_ECHOREPLY : ICMP6_ECHO_REPLY;
  uint16_t id;
  if (raw) {
    bind_local(fd, o, r, 0);
    id = (uint16_t)(o->sport ? o->sport : (getpid() & 0xffff));
    if (o->family == 4) {
      /* Only echo replies in the receive queue (errors arrive on the error queue). */
      uint32_t mask = ~(1U << ICMP_ECHOREPLY);
      setsockopt(fd, SOL_RAW, ICMP_FILTER, &mask, sizeof(mask));
    } else {
      struct icmp6_filter f;
      ICMP6_FILTER_SETBLOCKALL(&f);
      ICMP6_FILTER_SETPASS(ICMP6_ECHO_REPLY, &f);
      setsockopt(fd, IPPROTO_ICMPV6, ICMP6_FILTER, &f, sizeof(f));
    }
  } else {
    /* A ping socket's local port is the echo id (the kernel writes it into the header). */
    bind_local(fd, o, r, o->sport);
    id = (uint16_t)o->sport;
  }

  size_t hdr = ip_header_len(o->family) + 8;
  size_t plen = o->size >= 0 ? (size_t)o->size - hdr : strlen(o->payload);
  size_t len = 8 + plen;
  uint8_t *pkt = calloc(1, len);
  if (!pkt) fail(r, "malloc", ENOMEM);
  const uint16_t seq = 1;
  pkt[0] = type_request;
  pkt[1] = 0;
  uint16_t nid = htons(id), nseq = htons(seq);
  memcpy(pkt + 4, &nid, 2);
  memcpy(pkt + 6, &nseq, 2);
  fill_payload((char *)pkt + 8, plen, o->payload);
  if (raw && o->family == 4) {
    uint16_t c = inet_cksum(pkt, len);
    memcpy(pkt + 2, &c, 2);
  } /* ICMPv6 raw and ping sockets: the kernel computes the checksum. */

  double t0 = now_ms();
  /* Connected: only this peer's packets, and IP_MTU / IPV6_MTU work for EMSGSIZE. */
  if (connect(fd, (const struct sockaddr *)&o->dst, o->dst_len) < 0) {
    int err = errno;
    r->sport = id;
    classify(r, o, err);
    free(pkt);
    close(fd);
    return 0;
  }
  if (send(fd, pkt, len, 0) < 0) {
    int err = errno;
    if (err == EMSGSIZE) r->mtu = path_mtu(fd, o->family);
    r->sport = id;
    classify(r, o, err);
    free(pkt);
    close(fd);
    return 0;
  }
  free(pkt);
  if (!raw) {
    int port = get_port(fd);
    if (port >= 0) id = (uint16_t)port;
  }
  r->sport = id;
  double deadline = t0 + (double)o->timeout_ms;
  r->result = "timeout";
  snprintf(r->message, sizeof(r->message), "no echo reply from %s within %ld ms", o->dst_text, o->timeout_ms);
  while (wait_reply(fd, deadline, t0, r, o)) {
    uint8_t buf[PROBE_MAX_SIZE + 64];
    ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      r->rtt_ms = now_ms() - t0;
      classify(r, o, errno);
      break;
    }
    const uint8_t *icmp = buf;
    ssize_t ilen = n;
    if (raw && o->family == 4) { /* IPv4 raw sockets see the IP header too */
      if (n < 20) continue;
      size_t ihl = (size_t)(buf[0] & 0x0f) * 4;
      if ((ssize_t)ihl + 8 > n) continue;
      icmp = buf + ihl;
      ilen = n - (ssize_t)ihl;
    }
    if (ilen < 8 || icmp[0] != type_reply) continue;
    uint16_t rid, rseq;
    memcpy(&rid, icmp + 4, 2);
    memcpy(&rseq, icmp + 6, 2);
    if (ntohs(rseq) != seq || (raw && ntohs(rid) != id)) continue;
    r->rtt_ms = now_ms() - t0;
    r->result = "replied";
    r->bytes = (long)ilen;
    snprintf(r->message, sizeof(r->message), "echo reply from %s", o->dst_text);
    break;
  }
  close(fd);
  return 1;
}

int main(int argc, char **argv) {
  struct opts o;
  memset(&o, 0, sizeof(o));
  o.dport = -1;
  o.size = -1;
  o.timeout_ms = 1000;
  o.payload = "podnet-trace";
  const char *family_text = NULL, *proto_text = NULL;
  int seen_sport = 0, seen_dscp = 0, seen_timeout = 0, seen_payload = 0;
  const char *size_text = NULL;

  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--version") == 0) {
      printf("podnet-probe (podnet)\n");
      return 0;
    }
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) usage();
    if (strncmp(a, "--", 2) != 0) bad("unexpected argument \"%s\"", a);
    if (i + 1 >= argc) bad("%s needs a value", a);
    const char *v = argv[++i];
#define ONCE(cond) \
  if (cond) bad("%s given twice", a)
    if (strcmp(a, "--netns") == 0) {
      ONCE(o.netns);
      o.netns = v;
    } else if (strcmp(a, "--family") == 0) {
      ONCE(family_text);
      family_text = v;
    } else if (strcmp(a, "--proto") == 0) {
      ONCE(proto_text);
      proto_text = v;
    } else if (strcmp(a, "--dst") == 0) {
      ONCE(o.dst_text);
      o.dst_text = v;
    } else if (strcmp(a, "--src") == 0) {
      ONCE(o.src_text);
      o.src_text = v;
    } else if (strcmp(a, "--dport") == 0) {
      ONCE(o.dport >= 0);
      o.dport = parse_num(a, v, 0, 65535);
    } else if (strcmp(a, "--sport") == 0) {
      ONCE(seen_sport);
      seen_sport = 1;
      o.sport = parse_num(a, v, 0, 65535);
    } else if (strcmp(a, "--dscp") == 0) {
      ONCE(seen_dscp);
      seen_dscp = 1;
      o.dscp = parse_num(a, v, 0, 63);
    } else if (strcmp(a, "--size") == 0) {
      ONCE(size_text);
      size_text = v;
    } else if (strcmp(a, "--timeout-ms") == 0) {
      ONCE(seen_timeout);
      seen_timeout = 1;
      o.timeout_ms = parse_num(a, v, 1, 600000);
    } else if (strcmp(a, "--payload") == 0) {
      ONCE(seen_payload);
      seen_payload = 1;
      if (!v[0] || strlen(v) > PAYLOAD_MAX) {
        fprintf(stderr, "podnet-probe: --payload must be 1 to %d bytes\n", PAYLOAD_MAX);
        return 2;
      }
      o.payload = v;
    } else {
      bad("unknown option %s", a);
    }
#undef ONCE
  }

  if (!family_text) bad("--family 4|6 is required");
  if (strcmp(family_text, "4") == 0)
    o.family = 4;
  else if (strcmp(family_text, "6") == 0)
    o.family = 6;
  else
    bad("--family must be 4 or 6, got \"%s\"", family_text);
  if (!proto_text) bad("--proto tcp|udp|icmp is required");
  if (strcmp(proto_text, "tcp") == 0)
    o.proto = P_TCP;
  else if (strcmp(proto_text, "udp") == 0)
    o.proto = P_UDP;
  else if (strcmp(proto_text, "icmp") == 0)
    o.proto = P_ICMP;
  else if (strcmp(proto_text, "sctp") == 0)
    bad("--proto sctp is not supported by podnet-probe (tcp, udp or icmp)");
  else
    bad("--proto must be tcp, udp or icmp, got \"%s\"", proto_text);
  if (!o.dst_text) bad("--dst ADDR is required");
  parse_addr("--dst", o.dst_text, o.family, &o.dst, &o.dst_len);
  if (o.src_text) parse_addr("--src", o.src_text, o.family, &o.src, &o.src_len);
  if (o.proto == P_ICMP) {
    if (o.dport > 0) bad("--dport does not apply to icmp (the echo id is --sport)");
    o.dport = 0;
  } else if (o.dport <= 0) {
    bad("--dport N (1 to 65535) is required for %s", proto_text);
  }
  if (size_text) {
    if (o.proto == P_TCP) bad("--size applies to udp and icmp probes only");
    long min = (long)ip_header_len(o.family) + 8;
    o.size = parse_num("--size", size_text, min, PROBE_MAX_SIZE);
  }
  if (o.netns && o.netns[0] != '/') bad("--netns must be an absolute path, got \"%s\"", o.netns);

  signal(SIGPIPE, SIG_IGN);
  struct report r;
  memset(&r, 0, sizeof(r));
  r.result = "error";
  r.rtt_ms = -1;
  r.sport = o.sport;
  r.icmp_type = -1;
  r.icmp_code = -1;
  r.bytes = -1;

  if (o.netns) {
    int fd = open(o.netns, O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail(&r, o.netns, errno);
    if (setns(fd, CLONE_NEWNET) < 0) {
      int err = errno;
      char what[512];
      snprintf(what, sizeof(what), "setns %s%s", o.netns, err == EINVAL ? " (not a network namespace?)" : "");
      fail(&r, what, err);
    }
    close(fd);
  }

  int sent = 0;
  switch (o.proto) {
  case P_TCP:
    sent = probe_tcp(&o, &r);
    break;
  case P_UDP:
    sent = probe_udp(&o, &r);
    break;
  case P_ICMP:
    sent = probe_icmp(&o, &r);
    break;
  case P_NONE:
    usage();
  }
  print_report(&r);
  return sent ? 0 : 1;
}
