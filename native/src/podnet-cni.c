/* podnet-cni: the CNI plugin executable container runtimes run for podnet networks.
 *
 * It is deliberately tiny. It answers VERSION itself (a runtime asks ~38 times per
 * container, so that must cost a fork+exec and nothing more); every other command
 * (ADD, DEL, CHECK, STATUS, GC, and anything unknown) is forwarded to the local podnet
 * agent over a unix stream socket, and the agent's answer is relayed verbatim. The agent
 * does the work in-process, with the same sandbox/IPAM code and lock it uses for its own
 * pods, and owns all validation of the request (src/cni/protocol.ts).
 *
 * Socket path, first match wins:
 *   1. the top-level string field "socket" of the network configuration on stdin,
 *   2. the environment variable PODNET_CNI_SOCKET,
 *   3. /run/podnet/cni.sock.
 * PODNET_CNI_TIMEOUT_MS (default 90000) bounds the whole exchange with the agent.
 *
 * Wire format (one request and one response per connection; src/cni/README.md):
 *   frame    = length payload
 *   length   = 4 bytes, unsigned, big-endian: the number of payload bytes (at most 8 MiB)
 *   payload  = UTF-8 JSON text
 *   request  = {"v":1,"env":{"CNI_COMMAND":"ADD",...every CNI_* variable...},
 *               "stdin":"<stdin exactly as read, as a JSON string>"}
 *   response = {"exit":0,"stdout":"<text to print on stdout>"}
 * The program prints `stdout` and exits with `exit` (0..255).
 *
 * Failures it reports itself, as a CNI error object on stdout and exit status 1:
 *   4   CNI_COMMAND unset; PODNET_CNI_SOCKET / PODNET_CNI_TIMEOUT_MS invalid
 *   5   stdin unreadable or never closed; the request does not fit a frame
 *   6   stdin larger than 1 MiB or nested deeper than 512 levels; stdin not JSON and the
 *       agent unreachable
 *   7   "socket" present but not an absolute path that fits a unix socket address
 *   11  the agent cannot be reached, closes early or does not answer in time
 *   50  STATUS when the agent cannot be reached ("the plugin is not available")
 *   999 out of memory; the agent's answer is malformed
 *
 * The JSON scanner below is a complete, validating RFC 8259 parser that keeps only the
 * members of the top-level object it is asked for (last occurrence wins, as in
 * JSON.parse); nested objects and all other values are skipped without being copied.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define SUPPORTED_VERSIONS "[\"0.3.0\",\"0.3.1\",\"0.4.0\",\"1.0.0\",\"1.1.0\"]"
#define LATEST_VERSION "1.1.0"
#define DEFAULT_SOCKET "/run/podnet/cni.sock"
#define MAX_STDIN ((size_t)1 << 20)
#define MAX_FRAME ((size_t)8 << 20)
#define DEFAULT_TIMEOUT_MS 90000
#define CONNECT_TIMEOUT_MS 5000
#define VERSION_STDIN_TIMEOUT_MS 1000
#define JSON_MAX_DEPTH 512

enum {
  CNI_ERR_ENV = 4,
  CNI_ERR_IO = 5,
  CNI_ERR_DECODE = 6,
  CNI_ERR_CONFIG = 7,
  CNI_ERR_TRY_AGAIN = 11,
  CNI_ERR_NOT_AVAILABLE = 50,
  CNI_ERR_INTERNAL = 999,
};

/* Returned by read_exact when the peer closed the connection first. */
#define ERR_EOF (-1)

/* ---------------------------------------------------------------- buffers */

/* A growable byte buffer, always NUL-terminated once it holds anything. After an
 * allocation failure `failed` is set and every later append is a no-op. */
struct buf {
  char *data;
  size_t len, cap;
  int failed;
};

static int buf_reserve(struct buf *b, size_t extra) {
  if (b->failed) return -1;
  if (extra > SIZE_MAX - b->len - 1) {
    b->failed = 1;
    return -1;
  }
  size_t need = b->len + extra + 1;
  if (need <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  char *d = realloc(b->data, cap);
  if (!d) {
    b->failed = 1;
    return -1;
  }
  b->data = d;
  b->cap = cap;
  return 0;
}

static void buf_add(struct buf *b, const char *s, size_t n) {
  if (buf_reserve(b, n)) return;
  memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = '\0';
}

static void buf_str(struct buf *b, const char *s) { buf_add(b, s, strlen(s)); }

static void buf_char(struct buf *b, char c) { buf_add(b, &c, 1); }

/* Appends s[0..n) as a JSON string literal. Bytes >= 0x80 pass through unchanged. */
static void buf_json(struct buf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  buf_char(b, '"');
  size_t run = 0; /* start of the pending run of bytes that need no escaping */
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    const char *esc = NULL;
    char u[7];
    switch (c) {
      case '"': esc = "\\\""; break;
      case '\\': esc = "\\\\"; break;
      case '\b': esc = "\\b"; break;
      case '\f': esc = "\\f"; break;
      case '\n': esc = "\\n"; break;
      case '\r': esc = "\\r"; break;
      case '\t': esc = "\\t"; break;
      default:
        if (c < 0x20) {
          memcpy(u, "\\u00", 4);
          u[4] = hex[c >> 4];
          u[5] = hex[c & 15];
          u[6] = '\0';
          esc = u;
        }
    }
    if (esc) {
      buf_add(b, s + run, i - run);
      buf_str(b, esc);
      run = i + 1;
    }
  }
  buf_add(b, s + run, n - run);
  buf_char(b, '"');
}

static void buf_utf8(struct buf *b, uint32_t cp) {
  char o[4];
  size_t n;
  if (cp < 0x80) {
    o[0] = (char)cp;
    n = 1;
  } else if (cp < 0x800) {
    o[0] = (char)(0xC0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3F));
    n = 2;
  } else if (cp < 0x10000) {
    o[0] = (char)(0xE0 | (cp >> 12));
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    n = 3;
  } else {
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    n = 4;
  }
  buf_add(b, o, n);
}

/* ---------------------------------------------------------------- JSON scanner */

enum jtype { JT_NONE = 0, JT_OBJECT, JT_ARRAY, JT_STRING, JT_NUMBER, JT_BOOL, JT_NULL };

/* One member of the top-level object to look for. After a scan, `type` is the type of
 * its last occurrence (JT_NONE if absent); a string value is decoded into `str`/`len`
 * (malloc'd, NUL-terminated, may itself contain NUL bytes); `raw`/`rawlen` point at the
 * value's text inside the document. */
struct jfield {
  const char *key;
  enum jtype type;
  char *str;
  size_t len;
  const char *raw;
  size_t rawlen;
};

struct jscan {
  const char *p, *end;
  struct jfield *fields;
  size_t nfields;
  int oom;
  int too_deep;
};

static int scan_value(struct jscan *s, int depth, struct jfield *f, enum jtype *type);

static void skip_ws(struct jscan *s) {
  while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')) s->p++;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static int hex4(struct jscan *s, uint32_t *out) {
  if (s->end - s->p < 4) return -1;
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) {
    char c = s->p[i];
    int d = is_digit(c) ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
    if (d < 0) return -1;
    v = (v << 4) | (uint32_t)d;
  }
  s->p += 4;
  *out = v;
  return 0;
}

/* Scans the string literal at s->p (a '"'); decodes it into `out` unless out is NULL.
 * Lone surrogates decode to U+FFFD, as they have no UTF-8 form. */
static int scan_string(struct jscan *s, struct buf *out) {
  s->p++;
  const char *run = s->p;
  while (s->p < s->end) {
    unsigned char c = (unsigned char)*s->p;
    if (c == '"') {
      if (out) buf_add(out, run, (size_t)(s->p - run));
      s->p++;
      return 0;
    }
    if (c < 0x20) return -1;
    if (c != '\\') {
      s->p++;
      continue;
    }
    if (out) buf_add(out, run, (size_t)(s->p - run));
    s->p++;
    if (s->p >= s->end) return -1;
    char e = *s->p++;
    char lit;
    switch (e) {
      case '"': lit = '"'; break;
      case '\\': lit = '\\'; break;
      case '/': lit = '/'; break;
      case 'b': lit = '\b'; break;
      case 'f': lit = '\f'; break;
      case 'n': lit = '\n'; break;
      case 'r': lit = '\r'; break;
      case 't': lit = '\t'; break;
      case 'u': {
        uint32_t cp;
        if (hex4(s, &cp)) return -1;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          /* A high surrogate: combine with a following low surrogate escape. */
          const char *save = s->p;
          uint32_t lo;
          if (s->end - s->p >= 6 && s->p[0] == '\\' && s->p[1] == 'u') {
            s->p += 2;
            if (hex4(s, &lo) == 0 && lo >= 0xDC00 && lo <= 0xDFFF) {
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else {
              s->p = save; /* rescanned (and validated) as its own escape */
              cp = 0xFFFD;
            }
          } else {
            cp = 0xFFFD;
          }
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
          cp = 0xFFFD;
        }
        if (out) buf_utf8(out, cp);
        run = s->p;
        continue;
      }
      default:
        return -1;
    }
    if (out) buf_char(out, lit);
    run = s->p;
  }
  return -1; /* unterminated */
}

static int scan_number(struct jscan *s) {
  const char *p = s->p, *end = s->end;
  if (p < end && *p == '-') p++;
  if (p >= end) return -1;
  if (*p == '0') {
    p++;
  } else if (*p >= '1' && *p <= '9') {
    while (p < end && is_digit(*p)) p++;
  } else {
    return -1;
  }
  if (p < end && *p == '.') {
    p++;
    if (p >= end || !is_digit(*p)) return -1;
    while (p < end && is_digit(*p)) p++;
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    p++;
    if (p < end && (*p == '+' || *p == '-')) p++;
    if (p >= end || !is_digit(*p)) return -1;
    while (p < end && is_digit(*p)) p++;
  }
  s->p = p;
  return 0;
}

static int scan_literal(struct jscan *s, const char *word) {
  size_t n = strlen(word);
  if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0) return -1;
  s->p += n;
  return 0;
}

static struct jfield *match_field(struct jscan *s, const char *key, size_t len) {
  for (size_t i = 0; i < s->nfields; i++) {
    if (strlen(s->fields[i].key) == len && memcmp(s->fields[i].key, key, len) == 0) return &s->fields[i];
  }
  return NULL;
}

/* An object whose members are at `depth` (the top-level object's members are at 1). */
static int scan_object(struct jscan *s, int depth) {
  s->p++;
  skip_ws(s);
  if (s->p < s->end && *s->p == '}') {
    s->p++;
    return 0;
  }
  for (;;) {
    skip_ws(s);
    if (s->p >= s->end || *s->p != '"') return -1;
    struct jfield *f = NULL;
    if (depth == 1 && s->nfields > 0) {
      struct buf key = {0};
      int rc = scan_string(s, &key);
      if (key.failed) s->oom = 1;
      if (rc == 0 && !key.failed) f = match_field(s, key.data ? key.data : "", key.len);
      free(key.data);
      if (rc || s->oom) return -1;
    } else if (scan_string(s, NULL)) {
      return -1;
    }
    skip_ws(s);
    if (s->p >= s->end || *s->p != ':') return -1;
    s->p++;
    if (scan_value(s, depth, f, NULL)) return -1;
    skip_ws(s);
    if (s->p >= s->end) return -1;
    if (*s->p == ',') {
      s->p++;
      continue;
    }
    if (*s->p == '}') {
      s->p++;
      return 0;
    }
    return -1;
  }
}

static int scan_array(struct jscan *s, int depth) {
  s->p++;
  skip_ws(s);
  if (s->p < s->end && *s->p == ']') {
    s->p++;
    return 0;
  }
  for (;;) {
    if (scan_value(s, depth, NULL, NULL)) return -1;
    skip_ws(s);
    if (s->p >= s->end) return -1;
    if (*s->p == ',') {
      s->p++;
      continue;
    }
    if (*s->p == ']') {
      s->p++;
      return 0;
    }
    return -1;
  }
}

/* Scans one value; `depth` is the depth of the container holding it (0 at the top).
 * When `f` is given the value is recorded in it. */
static int scan_value(struct jscan *s, int depth, struct jfield *f, enum jtype *type) {
  skip_ws(s);
  if (s->p >= s->end) return -1;
  const char *start = s->p;
  enum jtype t;
  struct buf str = {0};
  int rc;
  switch (*s->p) {
    case '{':
      if (depth >= JSON_MAX_DEPTH) {
        s->too_deep = 1;
        return -1;
      }
      rc = scan_object(s, depth + 1);
      t = JT_OBJECT;
      break;
    case '[':
      if (depth >= JSON_MAX_DEPTH) {
        s->too_deep = 1;
        return -1;
      }
      rc = scan_array(s, depth + 1);
      t = JT_ARRAY;
      break;
    case '"':
      rc = scan_string(s, f ? &str : NULL);
      if (rc == 0 && f && !str.data) buf_reserve(&str, 0); /* "" still gets a buffer */
      if (str.failed) {
        s->oom = 1;
        rc = -1;
      }
      t = JT_STRING;
      break;
    case 't':
      rc = scan_literal(s, "true");
      t = JT_BOOL;
      break;
    case 'f':
      rc = scan_literal(s, "false");
      t = JT_BOOL;
      break;
    case 'n':
      rc = scan_literal(s, "null");
      t = JT_NULL;
      break;
    default:
      rc = scan_number(s);
      t = JT_NUMBER;
  }
  if (rc) {
    free(str.data);
    return -1;
  }
  if (f) {
    free(f->str);
    f->type = t;
    f->str = t == JT_STRING ? str.data : NULL;
    f->len = t == JT_STRING ? str.len : 0;
    if (f->str) f->str[f->len] = '\0';
    f->raw = start;
    f->rawlen = (size_t)(s->p - start);
  } else {
    free(str.data);
  }
  if (type) *type = t;
  return 0;
}

/* Validates doc[0..len) as one JSON text and fills `fields` from the members of the
 * top-level object. Returns 0 (and the top-level type) on success, -1 on a syntax error,
 * -2 when out of memory, -3 for nesting deeper than JSON_MAX_DEPTH. */
static int json_scan(const char *doc, size_t len, struct jfield *fields, size_t nfields, enum jtype *top) {
  struct jscan s = {doc, doc + len, fields, nfields, 0, 0};
  for (size_t i = 0; i < nfields; i++) {
    free(fields[i].str);
    fields[i].str = NULL;
    fields[i].len = 0;
    fields[i].type = JT_NONE;
  }
  enum jtype t = JT_NONE;
  int rc = scan_value(&s, 0, NULL, &t);
  if (rc == 0) {
    skip_ws(&s);
    if (s.p != s.end) rc = -1;
  }
  if (s.oom) return -2;
  if (s.too_deep) return -3;
  if (rc) return -1;
  if (top) *top = t;
  return 0;
}

/* ---------------------------------------------------------------- output */

/* cniVersion for error objects: the configuration's, once it is known. */
static char g_cni_version[33] = LATEST_VERSION;

static int now_ms_failed;

static int64_t now_ms(void) {
  struct timespec ts;
  if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
    now_ms_failed = 1;
    return 0;
  }
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds left until `deadline`, clamped to [0, INT32_MAX]. */
static int ms_left(int64_t deadline) {
  int64_t left = deadline - now_ms();
  if (left <= 0) return 0;
  return left > INT32_MAX ? INT32_MAX : (int)left;
}

static int wait_fd(int fd, short events, int64_t deadline) {
  for (;;) {
    int left = ms_left(deadline);
    if (left == 0) return ETIMEDOUT;
    struct pollfd p = {.fd = fd, .events = events, .revents = 0};
    int r = poll(&p, 1, left);
    if (r > 0) return 0; /* readable/writable, or an error the next call reports */
    if (r == 0) return ETIMEDOUT;
    if (errno != EINTR) return errno;
  }
}

/* Writes all of data to fd (a socket when `sock`), riding out EINTR, partial writes and
 * a non-blocking fd. Returns 0 or an errno. */
static int write_all(int fd, const char *data, size_t len, int64_t deadline, int sock) {
  while (len > 0) {
    ssize_t n = sock ? send(fd, data, len, MSG_NOSIGNAL) : write(fd, data, len);
    if (n > 0) {
      data += n;
      len -= (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      int e = wait_fd(fd, POLLOUT, deadline);
      if (e) return e;
      continue;
    }
    return n < 0 ? errno : EIO;
  }
  return 0;
}

/* Prints a CNI error object on stdout; returns the exit status to use (1). */
static int cni_error(int code, const char *details, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int cni_error(int code, const char *details, const char *fmt, ...) {
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (n < 0) snprintf(msg, sizeof msg, "podnet-cni: cannot format an error message");
  struct buf b = {0};
  char num[16];
  snprintf(num, sizeof num, "%d", code);
  buf_str(&b, "{\"cniVersion\":\"");
  buf_str(&b, g_cni_version);
  buf_str(&b, "\",\"code\":");
  buf_str(&b, num);
  buf_str(&b, ",\"msg\":");
  buf_json(&b, msg, strlen(msg));
  if (details) {
    buf_str(&b, ",\"details\":");
    buf_json(&b, details, strlen(details));
  }
  buf_str(&b, "}\n");
  int64_t deadline = now_ms() + 10000;
  if (b.failed) {
    static const char oom[] = "{\"cniVersion\":\"" LATEST_VERSION "\",\"code\":999,\"msg\":\"podnet-cni: out of memory\"}\n";
    write_all(STDOUT_FILENO, oom, sizeof oom - 1, deadline, 0);
  } else {
    write_all(STDOUT_FILENO, b.data, b.len, deadline, 0);
  }
  free(b.data);
  return 1;
}

/* ---------------------------------------------------------------- input */

/* Reads fd 0 to end-of-file into `out`. Returns 0, E2BIG once more than `max` bytes
 * arrived, ETIMEDOUT if stdin is not closed before `deadline`, or another errno. A closed
 * fd 0 reads as empty. */
static int read_stdin(struct buf *out, size_t max, int64_t deadline) {
  for (;;) {
    int e = wait_fd(STDIN_FILENO, POLLIN, deadline);
    if (e == EBADF) return 0;
    if (e) return e;
    if (buf_reserve(out, 65536)) return ENOMEM;
    ssize_t n = read(STDIN_FILENO, out->data + out->len, 65536);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      return errno == EBADF ? 0 : errno;
    }
    if (n == 0) {
      out->data[out->len] = '\0';
      return 0;
    }
    out->len += (size_t)n;
    out->data[out->len] = '\0';
    if (out->len > max) return E2BIG;
  }
}

/* A version string we can copy into output unescaped: N.N.N, at most 32 bytes. */
static int is_version(const char *s, size_t len) {
  if (!s || len == 0 || len > 32 || strlen(s) != len) return 0;
  int dots = 0, digits = 0;
  for (size_t i = 0; i < len; i++) {
    if (is_digit(s[i])) {
      digits++;
    } else if (s[i] == '.' && digits > 0 && dots < 2) {
      dots++;
      digits = 0;
    } else {
      return 0;
    }
  }
  return dots == 2 && digits > 0;
}

/* Parses a decimal environment variable into *out: 0 when set and valid, 1 when unset
 * or empty (*out untouched), -1 when invalid. */
static int env_int(const char *name, long min, long max, long *out) {
  const char *v = getenv(name);
  if (!v || !*v) return 1;
  char *end = NULL;
  errno = 0;
  long n = strtol(v, &end, 10);
  if (errno || !end || *end || n < min || n > max) return -1;
  *out = n;
  return 0;
}

/* ---------------------------------------------------------------- socket */

/* Connects to the unix stream socket at `path` (checked to fit sun_path). The returned
 * fd is non-blocking. Returns 0 or an errno. */
static int connect_unix(const char *path, int64_t deadline, int *out) {
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  size_t n = strlen(path);
  if (n >= sizeof sa.sun_path) return ENAMETOOLONG;
  memcpy(sa.sun_path, path, n + 1);
  for (;;) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
      *out = fd;
      return 0;
    }
    int e = errno;
    if (e == EINPROGRESS || e == EINTR) {
      /* The connection completes in the background; its outcome is in SO_ERROR. */
      e = wait_fd(fd, POLLOUT, deadline);
      if (e == 0) {
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0) soerr = errno;
        if (soerr == 0) {
          *out = fd;
          return 0;
        }
        e = soerr;
      }
      close(fd);
      return e;
    }
    close(fd);
    if (e != EAGAIN) return e;
    /* The listen backlog is full: the agent is busy accepting. Retry shortly. */
    if (ms_left(deadline) == 0) return ETIMEDOUT;
    struct timespec ts = {0, 5 * 1000 * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
  }
}

/* Reads exactly len bytes. Returns 0, ERR_EOF if the peer closed first (*got says how
 * much arrived), or an errno. */
static int read_exact(int fd, char *dst, size_t len, int64_t deadline, size_t *got) {
  *got = 0;
  while (*got < len) {
    ssize_t n = recv(fd, dst + *got, len - *got, 0);
    if (n > 0) {
      *got += (size_t)n;
      continue;
    }
    if (n == 0) return ERR_EOF;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      int e = wait_fd(fd, POLLIN, deadline);
      if (e) return e;
      continue;
    }
    return errno;
  }
  return 0;
}

/* ---------------------------------------------------------------- commands */

static int cmd_version(void) {
  const char *version = LATEST_VERSION;
  struct buf in = {0};
  struct jfield f[] = {{"cniVersion", JT_NONE, NULL, 0, NULL, 0}};
  /* The answer echoes the requested cniVersion (spec: "the value of cniVersion specified
   * on input"). Input is optional: a terminal on stdin is not read at all. */
  if (!isatty(STDIN_FILENO) && read_stdin(&in, MAX_STDIN, now_ms() + VERSION_STDIN_TIMEOUT_MS) == 0 && in.len > 0) {
    enum jtype top = JT_NONE;
    if (json_scan(in.data, in.len, f, 1, &top) == 0 && top == JT_OBJECT && f[0].type == JT_STRING &&
        is_version(f[0].str, f[0].len)) {
      version = f[0].str;
    }
  }
  struct buf out = {0};
  buf_str(&out, "{\"cniVersion\":\"");
  buf_str(&out, version);
  buf_str(&out, "\",\"supportedVersions\":" SUPPORTED_VERSIONS "}\n");
  int rc = 0;
  if (out.failed) {
    rc = cni_error(CNI_ERR_INTERNAL, NULL, "podnet-cni: out of memory");
  } else if (write_all(STDOUT_FILENO, out.data, out.len, now_ms() + 10000, 0) != 0) {
    rc = 1; /* stdout is gone: nothing left to report on */
  }
  free(out.data);
  free(in.data);
  free(f[0].str);
  return rc;
}

struct exchange {
  const char *cmd;
  const char *socket;
  const char *socket_from; /* where the path came from, for messages */
  int stdin_is_json;
  long timeout_ms;
};

/* The agent cannot be reached at all (errno `e`). */
static int unreachable(const struct exchange *x, int e) {
  char details[1024];
  snprintf(details, sizeof details,
           "is the podnet agent running on this node? The socket path is %s; requests to it time out after %ld ms",
           x->socket_from, x->timeout_ms);
  if (!x->stdin_is_json) {
    return cni_error(CNI_ERR_DECODE, details,
                     "the network configuration on stdin is not valid JSON, and the podnet agent at %s cannot be reached to "
                     "say more: %s",
                     x->socket, strerror(e));
  }
  int code = strcmp(x->cmd, "STATUS") == 0 ? CNI_ERR_NOT_AVAILABLE : CNI_ERR_TRY_AGAIN;
  return cni_error(code, details, "cannot reach the podnet agent at %s: %s", x->socket, strerror(e));
}

/* Sends the request frame and relays the response frame. */
static int exchange(const struct exchange *x, const struct buf *frame, int64_t deadline) {
  int64_t connect_deadline = now_ms() + CONNECT_TIMEOUT_MS;
  if (connect_deadline > deadline) connect_deadline = deadline;
  int fd = -1;
  int e = connect_unix(x->socket, connect_deadline, &fd);
  if (e) return unreachable(x, e);

  int rc;
  struct buf resp = {0};
  struct jfield f[] = {{"exit", JT_NONE, NULL, 0, NULL, 0}, {"stdout", JT_NONE, NULL, 0, NULL, 0}};
  e = write_all(fd, frame->data, frame->len, deadline, 1);
  if (e == ETIMEDOUT) {
    rc = cni_error(CNI_ERR_TRY_AGAIN, NULL, "the podnet agent at %s did not read the %s request within %ld ms", x->socket,
                   x->cmd, x->timeout_ms);
    goto out;
  }
  if (e) {
    rc = cni_error(CNI_ERR_TRY_AGAIN, NULL, "cannot send the %s request to the podnet agent at %s: %s", x->cmd, x->socket,
                   strerror(e));
    goto out;
  }

  unsigned char hdr[4];
  size_t got = 0;
  e = read_exact(fd, (char *)hdr, sizeof hdr, deadline, &got);
  if (e == 0) {
    size_t len = ((size_t)hdr[0] << 24) | ((size_t)hdr[1] << 16) | ((size_t)hdr[2] << 8) | (size_t)hdr[3];
    if (len > MAX_FRAME) {
      rc = cni_error(CNI_ERR_INTERNAL, NULL, "the podnet agent at %s sent a %zu-byte answer; the limit is %zu bytes", x->socket,
                     len, MAX_FRAME);
      goto out;
    }
    if (buf_reserve(&resp, len)) {
      rc = cni_error(CNI_ERR_INTERNAL, NULL, "podnet-cni: out of memory");
      goto out;
    }
    e = read_exact(fd, resp.data, len, deadline, &got);
    resp.len = got;
    resp.data[resp.len] = '\0';
    if (e == ERR_EOF) {
      rc = cni_error(CNI_ERR_TRY_AGAIN, NULL, "the podnet agent at %s closed the connection in the middle of its answer to %s",
                     x->socket, x->cmd);
      goto out;
    }
  } else if (e == ERR_EOF) {
    rc = cni_error(CNI_ERR_TRY_AGAIN, NULL, "the podnet agent at %s closed the connection without answering %s", x->socket,
                   x->cmd);
    goto out;
  }
  if (e == ETIMEDOUT) {
    rc = cni_error(CNI_ERR_TRY_AGAIN, NULL, "the podnet agent at %s did not answer %s within %ld ms", x->socket, x->cmd,
                   x->timeout_ms);
    goto out;
  }
  if (e) {
    rc = cni_error(CNI_ERR_TRY_AGAIN, NULL, "cannot read the podnet agent's answer to %s from %s: %s", x->cmd, x->socket,
                   strerror(e));
    goto out;
  }
  close(fd);
  fd = -1;

  enum jtype top = JT_NONE;
  int s = json_scan(resp.data, resp.len, f, 2, &top);
  if (s == -2) {
    rc = cni_error(CNI_ERR_INTERNAL, NULL, "podnet-cni: out of memory");
    goto out;
  }
  /* exit must be a plain integer 0..255. */
  long status = -1;
  if (s == 0 && top == JT_OBJECT && f[0].type == JT_NUMBER && f[0].rawlen > 0 && f[0].rawlen <= 3) {
    status = 0;
    for (size_t i = 0; i < f[0].rawlen; i++) {
      if (!is_digit(f[0].raw[i])) {
        status = -1;
        break;
      }
      status = status * 10 + (f[0].raw[i] - '0');
    }
    if (status > 255) status = -1;
  }
  if (status < 0 || f[1].type != JT_STRING) {
    rc = cni_error(CNI_ERR_INTERNAL, NULL,
                   "the podnet agent at %s sent an answer that is not {\"exit\":0..255,\"stdout\":\"...\"} (%zu bytes)", x->socket,
                   resp.len);
    goto out;
  }
  if (write_all(STDOUT_FILENO, f[1].str, f[1].len, now_ms() + 10000, 0) != 0) {
    rc = 1;
    goto out;
  }
  rc = (int)status;

out:
  if (fd >= 0) close(fd);
  free(resp.data);
  free(f[0].str);
  free(f[1].str);
  return rc;
}

static int cmd_forward(const char *cmd) {
  struct exchange x = {cmd, NULL, NULL, 1, DEFAULT_TIMEOUT_MS};
  int erc = env_int("PODNET_CNI_TIMEOUT_MS", 1, 3600000, &x.timeout_ms);
  if (erc < 0) {
    return cni_error(CNI_ERR_ENV, NULL, "PODNET_CNI_TIMEOUT_MS must be a number of milliseconds between 1 and 3600000, got \"%s\"",
                     getenv("PODNET_CNI_TIMEOUT_MS"));
  }
  int64_t deadline = now_ms() + x.timeout_ms;
  if (now_ms_failed) return cni_error(CNI_ERR_INTERNAL, NULL, "podnet-cni: clock_gettime failed: %s", strerror(errno));

  int rc;
  struct buf in = {0}, frame = {0};
  struct jfield f[] = {{"socket", JT_NONE, NULL, 0, NULL, 0}, {"cniVersion", JT_NONE, NULL, 0, NULL, 0}};

  int e = read_stdin(&in, MAX_STDIN, deadline);
  if (e == E2BIG) {
    rc = cni_error(CNI_ERR_DECODE, NULL, "the network configuration on stdin is larger than %zu bytes", MAX_STDIN);
    goto out;
  }
  if (e == ETIMEDOUT) {
    rc = cni_error(CNI_ERR_IO, NULL, "stdin was not closed within %ld ms", x.timeout_ms);
    goto out;
  }
  if (e == ENOMEM) {
    rc = cni_error(CNI_ERR_INTERNAL, NULL, "podnet-cni: out of memory");
    goto out;
  }
  if (e) {
    rc = cni_error(CNI_ERR_IO, NULL, "cannot read the network configuration from stdin: %s", strerror(e));
    goto out;
  }

  enum jtype top = JT_NONE;
  int s = json_scan(in.data ? in.data : "", in.len, f, 2, &top);
  if (s == -2) {
    rc = cni_error(CNI_ERR_INTERNAL, NULL, "podnet-cni: out of memory");
    goto out;
  }
  if (s == -3) {
    rc = cni_error(CNI_ERR_DECODE, NULL, "the network configuration on stdin nests deeper than %d levels", JSON_MAX_DEPTH);
    goto out;
  }
  x.stdin_is_json = s == 0;
  if (s == 0 && top == JT_OBJECT && f[1].type == JT_STRING && is_version(f[1].str, f[1].len)) {
    memcpy(g_cni_version, f[1].str, f[1].len + 1);
  }

  size_t max_path = sizeof(((struct sockaddr_un *)0)->sun_path) - 1;
  if (s == 0 && top == JT_OBJECT && f[0].type != JT_NONE) {
    if (f[0].type != JT_STRING) {
      rc = cni_error(CNI_ERR_CONFIG, NULL, "socket must be a string: the path of the podnet agent's CNI socket");
      goto out;
    }
    if (f[0].len == 0 || f[0].str[0] != '/' || strlen(f[0].str) != f[0].len || f[0].len > max_path) {
      rc = cni_error(CNI_ERR_CONFIG, NULL, "socket must be an absolute path of at most %zu bytes without NUL bytes", max_path);
      goto out;
    }
    x.socket = f[0].str;
    x.socket_from = "the \"socket\" field of the network configuration";
  } else if (getenv("PODNET_CNI_SOCKET") && *getenv("PODNET_CNI_SOCKET")) {
    x.socket = getenv("PODNET_CNI_SOCKET");
    x.socket_from = "from PODNET_CNI_SOCKET";
    if (x.socket[0] != '/' || strlen(x.socket) > max_path) {
      rc = cni_error(CNI_ERR_ENV, NULL, "PODNET_CNI_SOCKET must be an absolute path of at most %zu bytes", max_path);
      goto out;
    }
  } else {
    x.socket = DEFAULT_SOCKET;
    x.socket_from = "the default (no \"socket\" field in the network configuration, no PODNET_CNI_SOCKET)";
  }

  /* The request frame: 4 length bytes (filled in below), then the JSON payload. */
  buf_add(&frame, "\0\0\0\0", 4);
  buf_str(&frame, "{\"v\":1,\"env\":{");
  int first = 1;
  for (char **ep = environ; ep && *ep; ep++) {
    if (strncmp(*ep, "CNI_", 4) != 0) continue;
    const char *eq = strchr(*ep, '=');
    if (!eq) continue;
    if (!first) buf_char(&frame, ',');
    first = 0;
    buf_json(&frame, *ep, (size_t)(eq - *ep));
    buf_char(&frame, ':');
    buf_json(&frame, eq + 1, strlen(eq + 1));
  }
  buf_str(&frame, "},\"stdin\":");
  buf_json(&frame, in.data ? in.data : "", in.len);
  buf_char(&frame, '}');
  if (frame.failed) {
    rc = cni_error(CNI_ERR_INTERNAL, NULL, "podnet-cni: out of memory");
    goto out;
  }
  size_t payload = frame.len - 4;
  if (payload > MAX_FRAME) {
    rc = cni_error(CNI_ERR_IO, NULL, "the %s request is %zu bytes once encoded; the limit is %zu bytes", cmd, payload, MAX_FRAME);
    goto out;
  }
  frame.data[0] = (char)((payload >> 24) & 0xFF);
  frame.data[1] = (char)((payload >> 16) & 0xFF);
  frame.data[2] = (char)((payload >> 8) & 0xFF);
  frame.data[3] = (char)(payload & 0xFF);

  rc = exchange(&x, &frame, deadline);

out:
  free(in.data);
  free(frame.data);
  free(f[0].str);
  free(f[1].str);
  return rc;
}

int main(void) {
  /* A closed socket must surface as EPIPE from send(), never kill the process. */
  signal(SIGPIPE, SIG_IGN);
  const char *cmd = getenv("CNI_COMMAND");
  if (!cmd || !*cmd) {
    fprintf(stderr,
            "podnet-cni: the podnet CNI plugin. Container runtimes run it with CNI_COMMAND=ADD|DEL|CHECK|STATUS|GC|VERSION\n"
            "and the network configuration on stdin; it forwards the request to the podnet agent. CNI protocol versions\n"
            "supported: 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0\n");
    return cni_error(CNI_ERR_ENV, NULL, "CNI_COMMAND is not set");
  }
  if (strcmp(cmd, "VERSION") == 0) return cmd_version();
  return cmd_forward(cmd);
}
