/* The compiled OTLP JSON normaliser: lines of export requests straight to column buffers.
 *
 * It handles a strict subset of what routeiq_assets/warehouse/otlp_fast.py accepts and builds
 * the same values from it, with no Python object per field. A line it is not sure of (anything
 * outside the subset: an unexpected type, an id that is not lowercase hex, a duplicate key, an
 * escaped key, an unknown contract version, JSON it cannot prove valid...) stops it before that
 * line: its rows are rolled back and the caller normalises the line the Python way, then calls
 * again after it. So the Python path stays the definition of what a line means; this file only
 * has to agree with it on the lines it accepts (tests/warehouse/test_otlp_native.py compares the
 * two on every fixture and on randomly altered lines).
 *
 * What the Python side still does, per distinct value rather than per row: JSON columns
 * (request_metadata, custom_attributes are returned as their raw JSON text), prompt scrubbing and
 * hashing, timestamps. See otlp_native.py.
 *
 * parse(buffer, start, end, first_line, file_name, max_records) reads the lines that start in
 * [start, end) and returns (columns, next_offset, next_line, stopped): columns is a list of
 * (length, null_count, validity bitmap or None, data, offsets or None), one per entry of
 * columns(), data and offsets handed over without a copy; stopped is True when the line at
 * next_offset needs the Python path. It returns early (stopped False) once max_records decisions
 * or calls are built, at a line boundary. It releases the GIL while it scans.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- growable buffers, columns */

typedef struct {
    char *p;
    size_t len, cap;
} Buf;

/* Each parse() call works in a State of its own (parse() releases the GIL while it scans, and
 * several threads parse at once), reached through one thread-local pointer: initial-exec TLS,
 * a plain load instead of a __tls_get_addr call on every column access (12 bytes of static TLS;
 * where the loader has none to spare, the import fails and ingestion takes the Python path). */
struct State;
static _Thread_local struct State *tstate __attribute__((tls_model("initial-exec")));
/* set when an allocation fails: parse() raises MemoryError */
static _Thread_local int oom __attribute__((tls_model("initial-exec")));

static int buf_reserve(Buf *b, size_t extra) {
    if (b->len + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static int buf_put(Buf *b, const void *src, size_t n) {
    if (n == 0) return 0;
    if (buf_reserve(b, n)) return -1;
    memcpy(b->p + b->len, src, n);
    b->len += n;
    return 0;
}

enum { K_STR, K_I64, K_F64, K_BOOL };

typedef struct {
    Buf data;  /* string bytes, int64s, doubles, or one byte a bool */
    Buf offs;  /* strings: int32 offsets, n + 1 of them */
    Buf valid; /* one byte a row: 1 valid, 0 null */
    size_t n, nulls;
} Col;

/* Columns, in the order columns() lists them. */
#define COLUMN_LIST(X)                                                                          \
    X(D_EVENT_ID, "d.event_id", K_STR)                                                          \
    X(D_LOCATION, "d.location", K_STR)                                                          \
    X(D_VERSION, "d.contract_version", K_STR)                                                   \
    X(D_NAME, "d.contract_name", K_STR)                                                         \
    X(D_TRACE, "d.trace_id", K_STR)                                                             \
    X(D_SPAN, "d.span_id", K_STR)                                                               \
    X(D_PARENT, "d.parent_span_id", K_STR)                                                      \
    X(D_TS, "d.timestamp_utc", K_STR)                                                           \
    X(D_TS_MS, "d.timestamp_unix_ms", K_I64)                                                    \
    X(D_REQ_MODEL, "d.requested_model", K_STR)                                                  \
    X(D_QLEN, "d.query_length", K_I64)                                                          \
    X(D_USER, "d.user_id", K_STR)                                                               \
    X(D_TEAM, "d.team_id", K_STR)                                                               \
    X(D_API, "d.api_type", K_STR)                                                               \
    X(D_META, "d.request_metadata", K_STR)                                                      \
    X(D_STRAT, "d.strategy_name", K_STR)                                                        \
    X(D_STRAT_VER, "d.strategy_version", K_STR)                                                 \
    X(D_SELECTED, "d.selected_deployment", K_STR)                                               \
    X(D_REASON, "d.selection_reason", K_STR)                                                    \
    X(D_EXP_ID, "d.experiment_id", K_STR)                                                       \
    X(D_EXP_VARIANT, "d.experiment_variant", K_STR)                                             \
    X(D_EXP_STRAT, "d.experiment_strategy_name", K_STR)                                         \
    X(D_EXP_STRAT_VER, "d.experiment_strategy_version", K_STR)                                  \
    X(D_EXP_WEIGHT, "d.experiment_weight", K_F64)                                               \
    X(D_EXP_TOTAL, "d.experiment_total_weight", K_F64)                                          \
    X(D_EXP_BUCKET, "d.experiment_hash_bucket", K_I64)                                          \
    X(D_EXP_KEY, "d.experiment_hash_key_type", K_STR)                                           \
    X(D_TOTAL_MS, "d.total_ms", K_F64)                                                          \
    X(D_STRAT_MS, "d.strategy_ms", K_F64)                                                       \
    X(D_EMB_MS, "d.embedding_ms", K_F64)                                                        \
    X(D_FILTER_MS, "d.candidate_filter_ms", K_F64)                                              \
    X(D_STATUS, "d.outcome_status", K_STR)                                                      \
    X(D_ERR_MSG, "d.error_message", K_STR)                                                      \
    X(D_ERR_TYPE, "d.error_type", K_STR)                                                        \
    X(D_IN_TOK, "d.input_tokens", K_I64)                                                        \
    X(D_OUT_TOK, "d.output_tokens", K_I64)                                                      \
    X(D_TOT_TOK, "d.total_tokens", K_I64)                                                       \
    X(D_OUT_API, "d.outcome_api_type", K_STR)                                                   \
    X(D_FB_TRIG, "d.fallback_triggered", K_BOOL)                                                \
    X(D_FB_ORIG, "d.fallback_original_model", K_STR)                                            \
    X(D_FB_REASON, "d.fallback_reason", K_STR)                                                  \
    X(D_FB_ATTEMPT, "d.fallback_attempt", K_I64)                                                \
    X(D_NCAND, "d.num_candidates", K_I64)                                                       \
    X(D_CUSTOM, "d.custom_attributes", K_STR)                                                   \
    X(C_OWNER, "c.decision", K_I64)                                                             \
    X(C_POS, "c.position", K_I64)                                                               \
    X(C_MODEL, "c.model_name", K_STR)                                                           \
    X(C_PROVIDER, "c.provider", K_STR)                                                          \
    X(C_SCORE, "c.score", K_F64)                                                                \
    X(C_AVAIL, "c.available", K_BOOL)                                                           \
    X(C_SELECTED, "c.is_selected", K_BOOL)                                                      \
    X(L_TRACE, "l.trace_id", K_STR)                                                             \
    X(L_SPAN, "l.span_id", K_STR)                                                               \
    X(L_LOCATION, "l.location", K_STR)                                                          \
    X(L_PARENT, "l.parent_span_id", K_STR)                                                      \
    X(L_NAME, "l.span_name", K_STR)                                                             \
    X(L_PROMPT, "l.prompt", K_STR)                                                              \
    X(L_REQ_MODEL, "l.request_model", K_STR)                                                    \
    X(L_RESP_MODEL, "l.response_model", K_STR)                                                  \
    X(L_COMPLETION, "l.completion", K_STR)                                                      \
    X(L_IN, "l.input_tokens", K_I64)                                                            \
    X(L_OUT, "l.output_tokens", K_I64)                                                          \
    X(L_TOT, "l.total_tokens", K_I64)                                                           \
    X(L_DUR, "l.duration_ms", K_F64)                                                            \
    X(L_START_MS, "l.start_unix_ms", K_I64)                                                     \
    X(L_STATUS, "l.status", K_STR)                                                              \
    X(L_TASK, "l.task", K_STR)                                                                  \
    X(L_QUALITY, "l.quality_score", K_F64)                                                      \
    X(L_GT, "l.ground_truth", K_STR)

#define AS_ENUM(id, name, kind) id,
enum { COLUMN_LIST(AS_ENUM) NCOLS };
#define AS_NAME(id, name, kind) name,
static const char *COL_NAMES[NCOLS] = {COLUMN_LIST(AS_NAME)};
#define AS_KIND(id, name, kind) kind,
static const int COL_KINDS[NCOLS] = {COLUMN_LIST(AS_KIND)};

typedef struct State {
    Col cols_[NCOLS];
    Buf scratch_; /* unescaped payloads */
    Buf locbuf_;  /* "<file>:<line> span <id>" */
} State;
#define cols (tstate->cols_)
#define scratch (tstate->scratch_)
#define locbuf (tstate->locbuf_)

static int str_close(Col *c) { /* after appending a string's bytes to c->data */
    if (c->data.len > INT32_MAX) return -1; /* beyond 32-bit offsets: this line the Python way */
    int32_t end = (int32_t)c->data.len;
    if (buf_put(&c->offs, &end, 4)) return -1;
    char one = 1;
    if (buf_put(&c->valid, &one, 1)) return -1;
    c->n++;
    return 0;
}

static int put_str(int id, const char *s, size_t len) {
    Col *c = &cols[id];
    if (buf_put(&c->data, s, len)) return -1;
    return str_close(c);
}

static size_t unescape(const char *s, size_t len, char *out);

/* A scanned JSON string (its raw bytes between the quotes), its escapes decoded when it has
 * any (the decoded text is never longer). */
static int put_json_str(int id, const char *s, size_t len, int esc) {
    if (!esc) return put_str(id, s, len);
    Col *c = &cols[id];
    if (buf_reserve(&c->data, len)) return -1;
    c->data.len += unescape(s, len, c->data.p + c->data.len);
    return str_close(c);
}

static int put_null(int id) {
    Col *c = &cols[id];
    char zero = 0;
    if (buf_put(&c->valid, &zero, 1)) return -1;
    switch (COL_KINDS[id]) {
    case K_STR: {
        int32_t end = (int32_t)c->data.len;
        if (buf_put(&c->offs, &end, 4)) return -1;
        break;
    }
    case K_I64:
    case K_F64: {
        static const char zeros[8];
        if (buf_put(&c->data, zeros, 8)) return -1;
        break;
    }
    default:
        if (buf_put(&c->data, &zero, 1)) return -1;
    }
    c->n++;
    c->nulls++;
    return 0;
}

/* A valid fixed-width value (8 bytes, or 1 for a bool). */
static inline int put_value(int id, const void *v, size_t width) {
    Col *c = &cols[id];
    char one = 1;
    if (buf_put(&c->data, v, width) || buf_put(&c->valid, &one, 1)) return -1;
    c->n++;
    return 0;
}

static int put_i64(int id, int64_t v) { return put_value(id, &v, 8); }

static int put_f64(int id, double v) { return put_value(id, &v, 8); }

static int put_bool(int id, int v) {
    char b = v ? 1 : 0;
    return put_value(id, &b, 1);
}

/* The last string of a column (valid or not). */
static const char *last_str(int id, size_t *len, int *valid) {
    Col *c = &cols[id];
    int32_t *o = (int32_t *)c->offs.p;
    *len = (size_t)(o[c->n] - o[c->n - 1]);
    *valid = c->valid.p[c->n - 1];
    return c->data.p + o[c->n - 1];
}

typedef struct {
    size_t n, nulls;
} Mark;

static void marks_take(Mark *m) {
    for (int i = 0; i < NCOLS; i++) {
        m[i].n = cols[i].n;
        m[i].nulls = cols[i].nulls;
    }
}

static void marks_restore(const Mark *m) {
    for (int i = 0; i < NCOLS; i++) {
        Col *c = &cols[i];
        c->n = m[i].n;
        c->nulls = m[i].nulls;
        c->valid.len = c->n;
        switch (COL_KINDS[i]) {
        case K_STR:
            c->offs.len = (c->n + 1) * 4;
            c->data.len = (size_t)((int32_t *)c->offs.p)[c->n];
            break;
        case K_I64:
        case K_F64:
            c->data.len = c->n * 8;
            break;
        default:
            c->data.len = c->n;
        }
    }
}

/* ---------------------------------------------------------------- JSON scanning */

typedef struct {
    const char *p, *end;
} Cur;

#define FAIL (-1)
#define MAX_DEPTH 64

static inline void ws(Cur *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int hex4(const char *p) {
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char ch = p[i];
        v <<= 4;
        if (ch >= '0' && ch <= '9') v |= ch - '0';
        else if (ch >= 'a' && ch <= 'f') v |= ch - 'a' + 10;
        else if (ch >= 'A' && ch <= 'F') v |= ch - 'A' + 10;
        else return -1;
    }
    return v;
}

/* The \u escape at p (p[0] == '\\', p[1] == 'u'), a surrogate pair as one: the bytes it takes
 * (6 or 12), or FAIL when it is not four hex digits or an unpaired surrogate. */
static int u_escape(const char *p, const char *e) {
    if (e - p < 6) return FAIL;
    int u = hex4(p + 2);
    if (u < 0 || (u >= 0xDC00 && u <= 0xDFFF)) return FAIL;
    if (u < 0xD800 || u > 0xDBFF) return 6;
    if (e - p < 12 || p[6] != '\\' || p[7] != 'u') return FAIL;
    int l = hex4(p + 8);
    if (l < 0xDC00 || l > 0xDFFF) return FAIL;
    return 12;
}

/* Set at import (module init) where the CPU has them, up to ROUTEIQ_NATIVE_SIMD (0, 1): the AVX2
 * string scanner, the AVX-512 (VBMI2) unescaper below. Every path gives the same results (the
 * tests run each, set_simd). simd_supported: 0 none, 1 AVX2, 2 both. */
static int use_avx2, use_avx512, simd_supported;

/* The string scan from p (inside the string, p[-1] not an escaping backslash): the portable
 * path, eight bytes at a time between escapes. */
static int scan_string_rest(Cur *c, const char *p, const char **s, size_t *len, int *esc, int x) {
    const char *e = c->end;
    while (p < e) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        /* eight bytes at a time to the first quote, backslash or control character (the lowest
         * flagged byte of each test is exact: borrows only run upwards from it) */
        while (e - p >= 8) {
            uint64_t w;
            memcpy(&w, p, 8);
            const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
            uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');
            uint64_t special =
                (((q - ones) & ~q) | ((b - ones) & ~b) | ((w - ones * 0x20) & ~w)) & high;
            if (special) {
                p += __builtin_ctzll(special) >> 3;
                break;
            }
            p += 8;
        }
        if (p >= e) break;
#endif
        unsigned char ch = (unsigned char)*p;
        if (ch == '"') {
            *s = c->p + 1;
            *len = (size_t)(p - (c->p + 1));
            *esc = x;
            c->p = p + 1;
            return 0;
        }
        if (ch < 0x20) return FAIL;
        if (ch == '\\') {
            x = 1;
            if (p + 1 >= e) return FAIL;
            char n = p[1];
            if (n == 'u') {
                int taken = u_escape(p, e);
                if (taken < 0) return FAIL;
                p += taken;
                continue;
            }
            if (n == '"' || n == '\\' || n == '/' || n == 'b' || n == 'f' || n == 'n' ||
                n == 'r' || n == 't') {
                p += 2;
                continue;
            }
            return FAIL;
        }
        p++;
    }
    return FAIL;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_AVX2_PATH 1
/* compilers that know the VBMI2 target and its CPU test (GCC 8, clang 6 and later) */
#if defined(__clang__) ? __clang_major__ >= 6 : __GNUC__ >= 8
#define HAVE_AVX512_PATH 1
#endif

/* The bytes of a block escaped by a backslash (bit i: byte i), from the bitmask of its
 * backslashes and *carry (1 when the block's first byte is escaped by the one before it), with
 * no loop over the escapes. A run of backslashes escapes every second byte from its start, and
 * the byte after it when its length is odd. Adding a run's first bit to the mask carries through
 * the run and sets the bit after it; XOR with the mask leaves the run and that bit set, and the
 * escaped ones are those of the other parity than the run's start: runs starting on even bits
 * and on odd bits are added separately. The second addition's overflow is a run starting on an
 * odd bit reaching the last one: odd, so it escapes the next block's first byte. (The method of
 * simdjson: Langdale and Lemire, "Parsing gigabytes of JSON per second", 2019.) */
#define ESCAPED_BYTES(NAME, T, EVEN)                                                           \
    static inline T NAME(T b, T *carry) {                                                      \
        T prev = *carry, odd_sum;                                                              \
        b &= ~prev; /* an escaped backslash escapes nothing */                                 \
        T starts = b & ~(T)(b << 1);                                                           \
        *carry = (T)__builtin_add_overflow(b, starts & (T)~(EVEN), &odd_sum);                  \
        return (T)(((T)(b + (starts & (EVEN))) ^ b) & (T)~(EVEN)) | ((odd_sum ^ b) & (EVEN)) | \
               prev;                                                                           \
    }
ESCAPED_BYTES(escaped_bytes32, uint32_t, 0x55555555u)
ESCAPED_BYTES(escaped_bytes64, uint64_t, 0x5555555555555555ULL)

/* The same scan 32 bytes at a time: masks of quotes, backslashes and control characters, the
 * escaped bytes from the backslashes (escaped_bytes32: decision payloads are escaped JSON, a
 * backslash every ten bytes or so); the first quote not escaped ends the string. The escaped
 * bytes before it are checked in the block, a \u escape by u_escape. */
__attribute__((target("avx2"))) static int scan_string_avx2(Cur *c, const char **s, size_t *len,
                                                             int *esc) {
    const char *p = c->p + 1, *e = c->end;
    const char *checked = p; /* every \u escape starting before this was checked */
    uint32_t carry = 0;      /* the block's first byte is escaped by the last one before it */
    int x = 0;
    const __m256i vq = _mm256_set1_epi8('"'), vb = _mm256_set1_epi8('\\'),
                  vctl = _mm256_set1_epi8(0x1F), vu = _mm256_set1_epi8('u');
    while (e - p >= 32) {
        __m256i v = _mm256_loadu_si256((const __m256i *)p);
        uint32_t q = (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(v, vq));
        uint32_t b = (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(v, vb));
        uint32_t ctl =
            (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_min_epu8(v, vctl), v));
        uint32_t escaped = escaped_bytes32(b, &carry);
        uint32_t end = q & ~escaped;
        uint32_t before = end ? (end & (0u - end)) - 1 : 0xFFFFFFFFu;
        if (ctl & before) return FAIL;
        uint32_t escs = escaped & before;
        if (escs) {
            x = 1;
            __m256i ok = _mm256_or_si256(
                _mm256_or_si256(_mm256_or_si256(_mm256_cmpeq_epi8(v, vq), _mm256_cmpeq_epi8(v, vb)),
                                _mm256_or_si256(_mm256_cmpeq_epi8(v, _mm256_set1_epi8('/')),
                                                _mm256_cmpeq_epi8(v, _mm256_set1_epi8('b')))),
                _mm256_or_si256(_mm256_or_si256(_mm256_cmpeq_epi8(v, _mm256_set1_epi8('f')),
                                                _mm256_cmpeq_epi8(v, _mm256_set1_epi8('n'))),
                                _mm256_or_si256(_mm256_cmpeq_epi8(v, _mm256_set1_epi8('r')),
                                                _mm256_cmpeq_epi8(v, _mm256_set1_epi8('t')))));
            uint32_t us = (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(v, vu)) & escs;
            if (escs & ~((uint32_t)_mm256_movemask_epi8(ok) | us)) return FAIL;
            while (us) {
                const char *bs = p + __builtin_ctz(us) - 1; /* its backslash */
                us &= us - 1;
                if (bs < checked) continue; /* the second half of a pair checked with the first */
                int taken = u_escape(bs, e);
                if (taken < 0) return FAIL;
                checked = bs + taken;
            }
        }
        if (end) {
            *s = c->p + 1;
            *len = (size_t)(p + __builtin_ctz(end) - (c->p + 1));
            *esc = x;
            c->p = p + __builtin_ctz(end) + 1;
            return 0;
        }
        p += 32;
    }
    /* the last bytes: from the escaping backslash when one ends the last block, and never from
     * inside a \u escape already checked */
    p -= carry;
    if (p < checked) p = checked;
    return scan_string_rest(c, p, s, len, esc, x);
}
#endif

#ifdef HAVE_AVX2_PATH
/* The first newline from p (or e when there is none), and whether every byte before it is ASCII
 * (then the line needs no UTF-8 check): one pass, 32 bytes at a time, where memchr and the
 * check took two. */
__attribute__((target("avx2"))) static const char *line_end_avx2(const char *p, const char *e,
                                                                  int *ascii) {
    const __m256i vnl = _mm256_set1_epi8('\n');
    unsigned high = 0;
    while (e - p >= 32) {
        __m256i v = _mm256_loadu_si256((const __m256i *)p);
        unsigned nl = (unsigned)_mm256_movemask_epi8(_mm256_cmpeq_epi8(v, vnl));
        unsigned hi = (unsigned)_mm256_movemask_epi8(v);
        if (nl) {
            *ascii = !(high | (hi & ((nl & (0u - nl)) - 1)));
            return p + __builtin_ctz(nl);
        }
        high |= hi;
        p += 32;
    }
    while (p < e && *p != '\n') high |= (unsigned char)*p++ >> 7;
    *ascii = !high;
    return p;
}
#endif

/* The first newline from p, or NULL; *ascii: 1 when the bytes before it are known to be ASCII
 * (the AVX2 pass finds out; memchr does not, so 0 there: the line is checked). */
static inline const char *line_end(const char *p, const char *e, int *ascii) {
    *ascii = 0;
#ifdef HAVE_AVX2_PATH
    if (use_avx2) {
        const char *nl = line_end_avx2(p, e, ascii);
        return nl == e ? NULL : nl;
    }
#endif
    return memchr(p, '\n', (size_t)(e - p));
}

/* A JSON string at the cursor: its raw bytes between the quotes, and whether it has escapes.
 * Refuses control characters, bad escapes and unpaired surrogates. */
static inline int scan_string(Cur *c, const char **s, size_t *len, int *esc) {
    if (c->p >= c->end || *c->p != '"') return FAIL;
#ifdef HAVE_AVX2_PATH
    if (use_avx2) {
        /* Most strings are short keys and values without escapes: when the next 16 bytes hold
         * the closing quote with no backslash or control character before it, that is the
         * string, found here (SSE2, inlined) without the call and set-up of the full scan. */
        if (c->end - c->p >= 17) { /* the quote and the 16 bytes loaded after it */
            __m128i v = _mm_loadu_si128((const __m128i *)(c->p + 1));
            unsigned q = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')));
            unsigned odd = (unsigned)_mm_movemask_epi8(_mm_or_si128(
                _mm_cmpeq_epi8(v, _mm_set1_epi8('\\')),
                _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1F)), v)));
            if (q && !(odd & ((q & (0u - q)) - 1))) {
                size_t n = (size_t)__builtin_ctz(q);
                *s = c->p + 1;
                *len = n;
                *esc = 0;
                c->p += n + 2;
                return 0;
            }
        }
        return scan_string_avx2(c, s, len, esc);
    }
#endif
    return scan_string_rest(c, c->p + 1, s, len, esc, 0);
}

/* One escape at *sp (a backslash scan_string accepted) decoded to *op; 0, or FAIL when the bytes
 * end first (a mapped file can change after its scan). */
static inline int unescape_one(const char **sp, const char *e, char **op) {
    const char *s = *sp;
    char *o = *op;
    if (e - s < 2) return FAIL;
    char n = s[1];
    if (n != 'u') {
        switch (n) {
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        default: *o++ = n; /* " \ / */
        }
        *sp = s + 2;
        *op = o;
        return 0;
    }
    if (e - s < 6) return FAIL;
    unsigned int u = (unsigned int)hex4(s + 2) & 0xFFFF;
    s += 6;
    if (u >= 0xD800 && u <= 0xDBFF) {
        if (e - s < 6) return FAIL;
        unsigned int l = (unsigned int)hex4(s + 2) & 0xFFFF;
        s += 6;
        u = 0x10000 + ((u - 0xD800) << 10) + (l - 0xDC00);
    }
    if (u < 0x80) {
        *o++ = (char)u;
    } else if (u < 0x800) {
        *o++ = (char)(0xC0 | (u >> 6));
        *o++ = (char)(0x80 | (u & 0x3F));
    } else if (u < 0x10000) {
        *o++ = (char)(0xE0 | (u >> 12));
        *o++ = (char)(0x80 | ((u >> 6) & 0x3F));
        *o++ = (char)(0x80 | (u & 0x3F));
    } else {
        *o++ = (char)(0xF0 | (u >> 18));
        *o++ = (char)(0x80 | ((u >> 12) & 0x3F));
        *o++ = (char)(0x80 | ((u >> 6) & 0x3F));
        *o++ = (char)(0x80 | (u & 0x3F));
    }
    *sp = s;
    *op = o;
    return 0;
}

#ifdef HAVE_AVX512_PATH
/* unescape 64 bytes at a time where the CPU can compress bytes (AVX-512 VBMI2): the bytes of a
 * block but its escaping backslashes are packed together in one instruction as long as every
 * escape is \" \\ or \/ (those of a payload of escaped JSON); at any other escape the block is cut
 * before it and that escape decoded on its own. The decoded text is never longer than what is
 * left of the input, so a 64-byte store never passes out + len. */
__attribute__((target("avx512f,avx512bw,avx512vbmi2,popcnt"))) static size_t
unescape_avx512(const char *s, size_t len, char *out) {
    const char *e = s + len;
    char *o = out;
    const __m512i vb = _mm512_set1_epi8('\\'), vq = _mm512_set1_epi8('"'),
                  vs = _mm512_set1_epi8('/');
    while (e - s >= 64) {
        __m512i v = _mm512_loadu_si512((const void *)s);
        uint64_t b = _mm512_cmpeq_epi8_mask(v, vb);
        if (!b) {
            _mm512_storeu_si512((void *)o, v);
            s += 64;
            o += 64;
            continue;
        }
        uint64_t carry = 0, escaped = escaped_bytes64(b, &carry); /* a block starts outside */
        uint64_t starts = b & ~escaped; /* the backslashes that escape */
        uint64_t plain = b | _mm512_cmpeq_epi8_mask(v, vq) | _mm512_cmpeq_epi8_mask(v, vs);
        /* the backslashes of escapes decoding to something else, and of one running on into
         * the next block: the block is taken up to the first of them */
        uint64_t hard = (((starts << 1) & ~plain) >> 1) | (starts & (1ULL << 63));
        unsigned take = hard ? (unsigned)__builtin_ctzll(hard) : 64;
        uint64_t keep = (take == 64 ? ~0ULL : (1ULL << take) - 1) & ~starts;
        _mm512_storeu_si512((void *)o, _mm512_maskz_compress_epi8(keep, v));
        o += __builtin_popcountll(keep);
        s += take;
        if (hard && unescape_one(&s, e, &o)) return (size_t)(o - out);
    }
    while (s < e) {
        if (*s != '\\') {
            *o++ = *s++;
            continue;
        }
        if (unescape_one(&s, e, &o)) break;
    }
    return (size_t)(o - out);
}
#endif

/* Decode a scanned string's escapes into out (at most len bytes); returns the length. */
static size_t unescape(const char *s, size_t len, char *out) {
#ifdef HAVE_AVX512_PATH
    if (use_avx512) return unescape_avx512(s, len, out);
#endif
    const char *e = s + len;
    char *o = out;
    while (s < e) {
        if (*s != '\\') { /* the runs between escapes of a payload are short: bytewise */
            *o++ = *s++;
            continue;
        }
        if (unescape_one(&s, e, &o)) break;
    }
    return (size_t)(o - out);
}

/* A JSON number at the cursor; is_int when it has no fraction and no exponent. */
static int scan_number(Cur *c, const char **s, size_t *len, int *is_int) {
    const char *p = c->p, *e = c->end;
    *s = p;
    *is_int = 1;
    if (p < e && *p == '-') p++;
    if (p >= e) return FAIL;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < e && *p >= '0' && *p <= '9') p++;
    } else {
        return FAIL;
    }
    if (p < e && *p == '.') {
        *is_int = 0;
        p++;
        if (p >= e || *p < '0' || *p > '9') return FAIL;
        while (p < e && *p >= '0' && *p <= '9') p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        *is_int = 0;
        p++;
        if (p < e && (*p == '+' || *p == '-')) p++;
        if (p >= e || *p < '0' || *p > '9') return FAIL;
        while (p < e && *p >= '0' && *p <= '9') p++;
    }
    *len = (size_t)(p - *s);
    c->p = p;
    return 0;
}

static int lit(Cur *c, const char *word, size_t n) {
    if ((size_t)(c->end - c->p) >= n && memcmp(c->p, word, n) == 0) {
        c->p += n;
        return 1;
    }
    return 0;
}

static int is_null(Cur *c) { return lit(c, "null", 4); }

static int skip_value(Cur *c, int depth);

/* Object members: returns 1 with the key (no escapes allowed) and the cursor at its value, 0 at
 * the closing brace, FAIL on bad JSON. *st is 0 before the first member. */
static int obj_key(Cur *c, int *st, const char **k, size_t *kl) {
    ws(c);
    if (c->p >= c->end) return FAIL;
    if (*st) {
        if (*c->p == '}') {
            c->p++;
            return 0;
        }
        if (*c->p != ',') return FAIL;
        c->p++;
        ws(c);
    } else if (*c->p == '}') {
        c->p++;
        return 0;
    }
    int esc;
    if (scan_string(c, k, kl, &esc) || esc) return FAIL;
    ws(c);
    if (c->p >= c->end || *c->p != ':') return FAIL;
    c->p++;
    ws(c);
    *st = 1;
    return 1;
}

static int obj_open(Cur *c) {
    ws(c);
    if (c->p >= c->end || *c->p != '{') return FAIL;
    c->p++;
    return 0;
}

/* Array elements: returns 1 with the cursor at the next element, 0 at the closing bracket. */
static int arr_next(Cur *c, int *st) {
    ws(c);
    if (c->p >= c->end) return FAIL;
    if (*c->p == ']') {
        c->p++;
        return 0;
    }
    if (*st) {
        if (*c->p != ',') return FAIL;
        c->p++;
        ws(c);
    }
    *st = 1;
    return 1;
}

static int arr_open(Cur *c) {
    ws(c);
    if (c->p >= c->end || *c->p != '[') return FAIL;
    c->p++;
    return 0;
}

static int skip_value(Cur *c, int depth) {
    if (depth > MAX_DEPTH) return FAIL;
    ws(c);
    if (c->p >= c->end) return FAIL;
    const char *s;
    size_t n;
    int x, st = 0, r;
    switch (*c->p) {
    case '"':
        return scan_string(c, &s, &n, &x);
    case '{':
        c->p++;
        while (1) {
            ws(c);
            if (c->p >= c->end) return FAIL;
            if (st) {
                if (*c->p == '}') break;
                if (*c->p != ',') return FAIL;
                c->p++;
                ws(c);
            } else if (*c->p == '}') {
                break;
            }
            if (scan_string(c, &s, &n, &x)) return FAIL;
            ws(c);
            if (c->p >= c->end || *c->p != ':') return FAIL;
            c->p++;
            if (skip_value(c, depth + 1)) return FAIL;
            st = 1;
        }
        c->p++;
        return 0;
    case '[':
        c->p++;
        while ((r = arr_next(c, &st)) == 1)
            if (skip_value(c, depth + 1)) return FAIL;
        return r;
    case 't':
        return lit(c, "true", 4) ? 0 : FAIL;
    case 'f':
        return lit(c, "false", 5) ? 0 : FAIL;
    case 'n':
        return is_null(c) ? 0 : FAIL;
    default:
        return scan_number(c, &s, &n, &x);
    }
}

/* ---------------------------------------------------------------- typed values */

/* An integer of at most 18 digits (so every value and sum fits an int64). */
static int parse_int(const char *s, size_t len, int64_t *out) {
    int neg = 0;
    if (len && *s == '-') {
        neg = 1;
        s++;
        len--;
    }
    if (len == 0 || len > 18) return FAIL;
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return FAIL;
        v = v * 10 + (s[i] - '0');
    }
    *out = neg ? -v : v;
    return 0;
}

/* A JSON number as a Python float() of it: exact for integers of up to 15 digits, correctly
 * rounded (strtod) otherwise; out of range is refused (msgspec refuses it too). */
static int parse_float(const char *s, size_t len, int is_int, double *out) {
    if (is_int) {
        int64_t v;
        if (len > 16 || parse_int(s, len, &v)) return FAIL; /* at most 15 digits, and a sign */
        *out = (double)v;
        return 0;
    }
    char tmp[64];
    if (len >= sizeof tmp) return FAIL;
    memcpy(tmp, s, len);
    tmp[len] = 0;
    errno = 0;
    char *endp;
    double v = strtod(tmp, &endp);
    if (endp != tmp + len || errno == ERANGE || !isfinite(v)) return FAIL;
    *out = v;
    return 0;
}

/* Field readers for msgspec's strict types: the value at the cursor into column id. */
static int v_str(Cur *c, int id, int nullable) {
    ws(c);
    if (nullable && is_null(c)) return put_null(id);
    const char *s;
    size_t n;
    int esc;
    if (scan_string(c, &s, &n, &esc)) return FAIL;
    return put_json_str(id, s, n, esc);
}

static int v_int(Cur *c, int id) {
    ws(c);
    if (is_null(c)) return put_null(id);
    const char *s;
    size_t n;
    int is_int;
    int64_t v;
    if (scan_number(c, &s, &n, &is_int) || !is_int || parse_int(s, n, &v)) return FAIL;
    return put_i64(id, v);
}

/* An INTEGER warehouse column: a wider value is a contract violation (the Python way). */
static int v_int32(Cur *c, int id) {
    if (v_int(c, id)) return FAIL;
    Col *col = &cols[id];
    if (!col->valid.p[col->n - 1]) return 0;
    int64_t v = ((int64_t *)col->data.p)[col->n - 1];
    return (v < INT32_MIN || v > INT32_MAX) ? FAIL : 0;
}

static int v_float(Cur *c, int id) {
    ws(c);
    if (is_null(c)) return put_null(id);
    const char *s;
    size_t n;
    int is_int;
    double v;
    if (scan_number(c, &s, &n, &is_int) || parse_float(s, n, is_int, &v)) return FAIL;
    return put_f64(id, v);
}

static int v_bool(Cur *c, int id) {
    ws(c);
    if (lit(c, "true", 4)) return put_bool(id, 1);
    if (lit(c, "false", 5)) return put_bool(id, 0);
    return FAIL;
}

/* A JSON object kept as its raw text (msgspec.Raw, read as a dict by the Python side). */
static int v_raw_object(Cur *c, int id) {
    ws(c);
    if (c->p >= c->end || *c->p != '{') return FAIL;
    const char *s = c->p;
    if (skip_value(c, 1)) return FAIL;
    return put_str(id, s, (size_t)(c->p - s));
}

#define KEY(lit_) (kl == sizeof(lit_) - 1 && memcmp(k, lit_, kl) == 0)
/* Each field once: a repeated key (msgspec keeps the last) goes the Python way. */
#define ONCE(bit)                                                                               \
    do {                                                                                        \
        if (seen & (1ULL << (bit))) return FAIL;                                                \
        seen |= 1ULL << (bit);                                                                  \
    } while (0)

/* Fill the columns of fields not seen with their defaults (null unless given). */
static int nulls_for(const int *ids, int count, uint64_t seen) {
    for (int i = 0; i < count; i++)
        if (!(seen & (1ULL << i)) && put_null(ids[i])) return FAIL;
    return 0;
}

/* ---------------------------------------------------------------- the decision payload */

static const int INPUT_IDS[] = {D_REQ_MODEL, D_QLEN, D_USER, D_TEAM, D_API};

static int parse_input(Cur *c) {
    uint64_t seen = 0;
    int st = 0, r;
    const char *k;
    size_t kl;
    if (obj_open(c)) return FAIL;
    while ((r = obj_key(c, &st, &k, &kl)) == 1) {
        if (KEY("requested_model")) { ONCE(0); if (v_str(c, D_REQ_MODEL, 1)) return FAIL; }
        else if (KEY("query_length")) { ONCE(1); if (v_int32(c, D_QLEN)) return FAIL; }
        else if (KEY("user_id")) { ONCE(2); if (v_str(c, D_USER, 1)) return FAIL; }
        else if (KEY("team_id")) { ONCE(3); if (v_str(c, D_TEAM, 1)) return FAIL; }
        else if (KEY("api_type")) { ONCE(4); if (v_str(c, D_API, 1)) return FAIL; }
        else if (KEY("request_metadata")) { ONCE(5); if (v_raw_object(c, D_META)) return FAIL; }
        else if (skip_value(c, 2)) return FAIL;
    }
    if (r) return FAIL;
    if (nulls_for(INPUT_IDS, 5, seen)) return FAIL;
    if (!(seen & (1ULL << 5)) && put_str(D_META, "{}", 2)) return FAIL;
    return 0;
}

static int input_default(void) {
    if (nulls_for(INPUT_IDS, 5, 0)) return FAIL;
    return put_str(D_META, "{}", 2);
}

static const int EXP_IDS[] = {D_EXP_ID,     D_EXP_VARIANT, D_EXP_STRAT,  D_EXP_STRAT_VER,
                              D_EXP_WEIGHT, D_EXP_TOTAL,   D_EXP_BUCKET, D_EXP_KEY};

static int parse_experiment(Cur *c) {
    uint64_t seen = 0;
    int st = 0, r;
    const char *k;
    size_t kl;
    ws(c);
    if (is_null(c)) return nulls_for(EXP_IDS, 8, 0);
    if (obj_open(c)) return FAIL;
    while ((r = obj_key(c, &st, &k, &kl)) == 1) {
        if (KEY("experiment_id")) { ONCE(0); if (v_str(c, D_EXP_ID, 1)) return FAIL; }
        else if (KEY("variant")) { ONCE(1); if (v_str(c, D_EXP_VARIANT, 1)) return FAIL; }
        else if (KEY("strategy_name")) { ONCE(2); if (v_str(c, D_EXP_STRAT, 1)) return FAIL; }
        else if (KEY("strategy_version")) { ONCE(3); if (v_str(c, D_EXP_STRAT_VER, 1)) return FAIL; }
        else if (KEY("weight")) { ONCE(4); if (v_float(c, D_EXP_WEIGHT)) return FAIL; }
        else if (KEY("total_weight")) { ONCE(5); if (v_float(c, D_EXP_TOTAL)) return FAIL; }
        else if (KEY("hash_bucket")) { ONCE(6); if (v_int32(c, D_EXP_BUCKET)) return FAIL; }
        else if (KEY("hash_key_type")) { ONCE(7); if (v_str(c, D_EXP_KEY, 1)) return FAIL; }
        else if (skip_value(c, 2)) return FAIL;
    }
    if (r) return FAIL;
    return nulls_for(EXP_IDS, 8, seen);
}

static const int TIMING_IDS[] = {D_TOTAL_MS, D_STRAT_MS, D_EMB_MS, D_FILTER_MS};

static int parse_timings(Cur *c) {
    uint64_t seen = 0;
    int st = 0, r;
    const char *k;
    size_t kl;
    if (obj_open(c)) return FAIL;
    while ((r = obj_key(c, &st, &k, &kl)) == 1) {
        if (KEY("total_ms")) { ONCE(0); if (v_float(c, D_TOTAL_MS)) return FAIL; }
        else if (KEY("strategy_ms")) { ONCE(1); if (v_float(c, D_STRAT_MS)) return FAIL; }
        else if (KEY("embedding_ms")) { ONCE(2); if (v_float(c, D_EMB_MS)) return FAIL; }
        else if (KEY("candidate_filter_ms")) { ONCE(3); if (v_float(c, D_FILTER_MS)) return FAIL; }
        else if (skip_value(c, 2)) return FAIL;
    }
    if (r) return FAIL;
    return nulls_for(TIMING_IDS, 4, seen);
}

static const char *STATUSES[] = {"success", "failure", "fallback", "error", "no_candidates",
                                 "timeout"};
/* outcome_status first: it is required (no default), checked below */
static const int OUTCOME_IDS[] = {D_STATUS,  D_ERR_MSG, D_ERR_TYPE, D_IN_TOK,
                                  D_OUT_TOK, D_TOT_TOK, D_OUT_API};

static int parse_outcome(Cur *c) {
    uint64_t seen = 0;
    int st = 0, r;
    const char *k;
    size_t kl;
    if (obj_open(c)) return FAIL;
    while ((r = obj_key(c, &st, &k, &kl)) == 1) {
        if (KEY("status")) {
            ONCE(0);
            if (v_str(c, D_STATUS, 0)) return FAIL;
            size_t n;
            int valid, known = 0;
            const char *s = last_str(D_STATUS, &n, &valid);
            for (size_t i = 0; i < sizeof STATUSES / sizeof *STATUSES; i++)
                if (strlen(STATUSES[i]) == n && memcmp(STATUSES[i], s, n) == 0) known = 1;
            if (!known) return FAIL;
        }
        else if (KEY("error_message")) { ONCE(1); if (v_str(c, D_ERR_MSG, 1)) return FAIL; }
        else if (KEY("error_type")) { ONCE(2); if (v_str(c, D_ERR_TYPE, 1)) return FAIL; }
        else if (KEY("input_tokens")) { ONCE(3); if (v_int(c, D_IN_TOK)) return FAIL; }
        else if (KEY("output_tokens")) { ONCE(4); if (v_int(c, D_OUT_TOK)) return FAIL; }
        else if (KEY("total_tokens")) { ONCE(5); if (v_int(c, D_TOT_TOK)) return FAIL; }
        else if (KEY("api_type")) { ONCE(6); if (v_str(c, D_OUT_API, 1)) return FAIL; }
        else if (skip_value(c, 2)) return FAIL;
    }
    if (r || !(seen & 1)) return FAIL;
    return nulls_for(OUTCOME_IDS, 7, seen);
}

static const int FALLBACK_IDS[] = {D_FB_TRIG, D_FB_ORIG, D_FB_REASON, D_FB_ATTEMPT};

static int parse_fallback(Cur *c) {
    uint64_t seen = 0;
    int st = 0, r;
    const char *k;
    size_t kl;
    if (obj_open(c)) return FAIL;
    while ((r = obj_key(c, &st, &k, &kl)) == 1) {
        if (KEY("fallback_triggered")) { ONCE(0); if (v_bool(c, D_FB_TRIG)) return FAIL; }
        else if (KEY("original_model")) { ONCE(1); if (v_str(c, D_FB_ORIG, 1)) return FAIL; }
        else if (KEY("fallback_reason")) { ONCE(2); if (v_str(c, D_FB_REASON, 1)) return FAIL; }
        else if (KEY("fallback_attempt")) { ONCE(3); if (v_int32(c, D_FB_ATTEMPT)) return FAIL; }
        else if (skip_value(c, 2)) return FAIL;
    }
    if (r) return FAIL;
    if (!(seen & 1) && put_bool(D_FB_TRIG, 0)) return FAIL;
    return nulls_for(FALLBACK_IDS, 4, seen | 1);
}

static int fallback_default(void) {
    if (put_bool(D_FB_TRIG, 0)) return FAIL;
    return nulls_for(FALLBACK_IDS, 4, 1);
}

static int parse_candidates(Cur *c, int64_t owner, int64_t *count) {
    int ast = 0, ar;
    *count = 0;
    if (arr_open(c)) return FAIL;
    while ((ar = arr_next(c, &ast)) == 1) {
        uint64_t seen = 0;
        int st = 0, r;
        const char *k;
        size_t kl;
        if (obj_open(c)) return FAIL;
        while ((r = obj_key(c, &st, &k, &kl)) == 1) {
            if (KEY("model_name")) { ONCE(0); if (v_str(c, C_MODEL, 0)) return FAIL; }
            else if (KEY("provider")) { ONCE(1); if (v_str(c, C_PROVIDER, 1)) return FAIL; }
            else if (KEY("score")) { ONCE(2); if (v_float(c, C_SCORE)) return FAIL; }
            else if (KEY("available")) { ONCE(3); if (v_bool(c, C_AVAIL)) return FAIL; }
            else if (skip_value(c, 3)) return FAIL;
        }
        if (r || !(seen & 1)) return FAIL;
        if (!(seen & 2) && put_null(C_PROVIDER)) return FAIL;
        if (!(seen & 4) && put_null(C_SCORE)) return FAIL;
        if (!(seen & 8) && put_bool(C_AVAIL, 1)) return FAIL;
        if (put_i64(C_OWNER, owner) || put_i64(C_POS, *count)) return FAIL;
        (*count)++;
    }
    return ar;
}

static int ascii_ieq(const char *a, const char *b, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (x >= 0x80) return 0;
        if (x >= 'A' && x <= 'Z') x += 32;
        if (x != y) return 0;
    }
    return 1;
}

static const char DECISION_EVENT[] = "routeiq.router_decision.v1";

/* One decision payload (already unescaped) of a span whose trace id is span_trace (32
 * lowercase hex), located at loc. */
static int parse_decision(const char *p, size_t len, const char *span_trace, const char *loc,
                          size_t loclen) {
    Cur cur = {p, p + len}, *c = &cur;
    uint64_t seen = 0;
    int st = 0, r;
    const char *k;
    size_t kl;
    int64_t owner = (int64_t)cols[D_EVENT_ID].n, ncand = 0;
    size_t cand0 = cols[C_MODEL].n;
    if (obj_open(c)) return FAIL;
    while ((r = obj_key(c, &st, &k, &kl)) == 1) {
        if (KEY("contract_version")) { ONCE(0); if (v_str(c, D_VERSION, 0)) return FAIL; }
        else if (KEY("event_id")) { ONCE(1); if (v_str(c, D_EVENT_ID, 0)) return FAIL; }
        else if (KEY("trace_id")) {
            ONCE(2);
            const char *s;
            size_t n;
            int esc;
            ws(c);
            /* escaped or not 32 characters: never equal to the span's id, the Python way */
            if (scan_string(c, &s, &n, &esc) || esc || n != 32 || !ascii_ieq(s, span_trace, 32))
                return FAIL;
            if (put_str(D_TRACE, span_trace, 32)) return FAIL;
        }
        else if (KEY("outcome")) { ONCE(3); if (parse_outcome(c)) return FAIL; }
        else if (KEY("contract_name")) { ONCE(4); if (v_str(c, D_NAME, 0)) return FAIL; }
        else if (KEY("span_id")) { ONCE(5); if (v_str(c, D_SPAN, 1)) return FAIL; }
        else if (KEY("parent_span_id")) { ONCE(6); if (v_str(c, D_PARENT, 1)) return FAIL; }
        else if (KEY("timestamp_utc")) { ONCE(7); if (v_str(c, D_TS, 1)) return FAIL; }
        else if (KEY("timestamp_unix_ms")) { ONCE(8); if (v_int(c, D_TS_MS)) return FAIL; }
        else if (KEY("input")) { ONCE(9); if (parse_input(c)) return FAIL; }
        else if (KEY("strategy_name")) { ONCE(10); if (v_str(c, D_STRAT, 1)) return FAIL; }
        else if (KEY("strategy_version")) { ONCE(11); if (v_str(c, D_STRAT_VER, 1)) return FAIL; }
        else if (KEY("candidate_deployments")) {
            ONCE(12);
            if (parse_candidates(c, owner, &ncand)) return FAIL;
        }
        else if (KEY("selected_deployment")) { ONCE(13); if (v_str(c, D_SELECTED, 1)) return FAIL; }
        else if (KEY("selection_reason")) { ONCE(14); if (v_str(c, D_REASON, 1)) return FAIL; }
        else if (KEY("experiment")) { ONCE(15); if (parse_experiment(c)) return FAIL; }
        else if (KEY("timings")) { ONCE(16); if (parse_timings(c)) return FAIL; }
        else if (KEY("fallback")) { ONCE(17); if (parse_fallback(c)) return FAIL; }
        else if (KEY("custom_attributes")) { ONCE(18); if (v_raw_object(c, D_CUSTOM)) return FAIL; }
        else if (skip_value(c, 1)) return FAIL;
    }
    if (r) return FAIL;
    ws(c);
    if (c->p != c->end) return FAIL; /* trailing text after the payload */
    if ((seen & 0xF) != 0xF) return FAIL; /* version, event id, trace id and outcome required */
    if (!(seen & (1 << 4)) && put_str(D_NAME, DECISION_EVENT, sizeof DECISION_EVENT - 1))
        return FAIL;
    static const int OPTIONAL_STR[] = {D_SPAN, D_PARENT, D_TS};
    for (int i = 0; i < 3; i++)
        if (!(seen & (1ULL << (5 + i))) && put_null(OPTIONAL_STR[i])) return FAIL;
    if (!(seen & (1 << 8)) && put_null(D_TS_MS)) return FAIL;
    if (!(seen & (1 << 9)) && input_default()) return FAIL;
    if (!(seen & (1 << 10)) && put_null(D_STRAT)) return FAIL;
    if (!(seen & (1 << 11)) && put_null(D_STRAT_VER)) return FAIL;
    if (!(seen & (1 << 13)) && put_null(D_SELECTED)) return FAIL;
    if (!(seen & (1 << 14)) && put_null(D_REASON)) return FAIL;
    if (!(seen & (1 << 15)) && nulls_for(EXP_IDS, 8, 0)) return FAIL;
    if (!(seen & (1 << 16)) && nulls_for(TIMING_IDS, 4, 0)) return FAIL;
    if (!(seen & (1 << 17)) && fallback_default()) return FAIL;
    if (!(seen & (1 << 18)) && put_str(D_CUSTOM, "{}", 2)) return FAIL;
    /* the contract's checks: a known version, non-empty ids */
    size_t n;
    int valid;
    const char *s = last_str(D_VERSION, &n, &valid);
    if (!((n == 2 && memcmp(s, "v1", 2) == 0) || (n == 4 && memcmp(s, "v1.0", 4) == 0) ||
          (n == 4 && memcmp(s, "v1.1", 4) == 0)))
        return FAIL;
    last_str(D_EVENT_ID, &n, &valid);
    if (n == 0) return FAIL;
    if (put_str(D_LOCATION, loc, loclen) || put_i64(D_NCAND, ncand)) return FAIL;
    /* is_selected: the candidate's model name equals selected_deployment */
    size_t sl;
    const char *sel = last_str(D_SELECTED, &sl, &valid);
    int32_t *mo = (int32_t *)cols[C_MODEL].offs.p;
    for (size_t i = cand0; i < cols[C_MODEL].n; i++) {
        size_t ml = (size_t)(mo[i + 1] - mo[i]);
        int eq = valid && ml == sl && memcmp(cols[C_MODEL].data.p + mo[i], sel, sl) == 0;
        if (put_bool(C_SELECTED, eq)) return FAIL;
    }
    return 0;
}

/* ---------------------------------------------------------------- spans */

/* The attributes an LLM call reads; any other key is only checked. */
enum {
    A_PROMPT, A_PROMPT0, A_COMPLETION, A_COMPLETION0, A_REQ_MODEL, A_RESP_MODEL, A_IN, A_PROMPT_T,
    A_OUT, A_COMPLETION_T, A_TOTAL, A_TASK, A_QUALITY, A_GROUND_TRUTH, A_PAYLOAD, N_ATTRS
};
static const char *ATTR_KEYS[N_ATTRS] = {
    "gen_ai.prompt",           "gen_ai.prompt.0.content",     "gen_ai.completion",
    "gen_ai.completion.0.content", "gen_ai.request.model",    "gen_ai.response.model",
    "gen_ai.usage.input_tokens",   "gen_ai.usage.prompt_tokens", "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens", "gen_ai.usage.total_tokens", "litellm.task",
    "routeiq.quality_score",   "routeiq.ground_truth",        "routeiq.router_decision.payload"};

enum { T_ABSENT = 0, T_NONE, T_STR, T_INT, T_DBL, T_BOOL };

typedef struct {
    int type, esc;
    const char *s;
    size_t len;
    int64_t i;
    double d;
} AttrVal;

/* An AnyValue: exactly one of stringValue (a string), intValue (an integer, or a string of
 * one), doubleValue (a number), boolValue (true/false); or null. */
static int any_value(Cur *c, AttrVal *v) {
    ws(c);
    memset(v, 0, sizeof *v);
    if (is_null(c)) {
        v->type = T_NONE;
        return 0;
    }
    int st = 0, r, fields = 0;
    const char *k;
    size_t kl;
    if (obj_open(c)) return FAIL;
    while ((r = obj_key(c, &st, &k, &kl)) == 1) {
        const char *s;
        size_t n;
        int x;
        if (++fields > 1) return FAIL;
        if (KEY("stringValue")) {
            if (scan_string(c, &v->s, &v->len, &v->esc)) return FAIL;
            v->type = T_STR;
        } else if (KEY("intValue")) {
            ws(c);
            if (c->p < c->end && *c->p == '"') {
                if (scan_string(c, &s, &n, &x) || x || parse_int(s, n, &v->i)) return FAIL;
            } else if (scan_number(c, &s, &n, &x) || !x || parse_int(s, n, &v->i)) {
                return FAIL;
            }
            v->type = T_INT;
        } else if (KEY("doubleValue")) {
            ws(c);
            if (scan_number(c, &s, &n, &x) || parse_float(s, n, x, &v->d)) return FAIL;
            v->type = T_DBL;
        } else if (KEY("boolValue")) {
            ws(c);
            if (lit(c, "true", 4)) v->i = 1;
            else if (!lit(c, "false", 5)) return FAIL;
            v->type = T_BOOL;
        } else {
            return FAIL;
        }
    }
    if (r || fields != 1) return FAIL;
    return 0;
}

/* An attributes list: every item {"key": <string>, "value": AnyValue}; the tracked keys' values
 * land in vals (the last one wins, as in a dict); *llm is set when a key makes the span an LLM
 * call. */
static int attributes(Cur *c, AttrVal *vals, int *llm) {
    ws(c);
    if (is_null(c)) return 0;
    int ast = 0, ar;
    if (arr_open(c)) return FAIL;
    while ((ar = arr_next(c, &ast)) == 1) {
        int st = 0, r, have_key = 0, have_value = 0, esc;
        const char *k, *key = NULL;
        size_t kl, keylen = 0;
        AttrVal v = {T_NONE, 0, NULL, 0, 0, 0};
        if (obj_open(c)) return FAIL;
        while ((r = obj_key(c, &st, &k, &kl)) == 1) {
            if (KEY("key")) {
                if (have_key++) return FAIL;
                ws(c);
                if (scan_string(c, &key, &keylen, &esc) || esc) return FAIL;
            } else if (KEY("value")) {
                if (have_value++) return FAIL;
                if (any_value(c, &v)) return FAIL;
            } else if (skip_value(c, 2)) {
                return FAIL;
            }
        }
        if (r || !have_key) return FAIL;
        for (int a = 0; a < N_ATTRS; a++) {
            if (strlen(ATTR_KEYS[a]) == keylen && memcmp(ATTR_KEYS[a], key, keylen) == 0) {
                vals[a] = v;
                if (a == A_PROMPT || a == A_REQ_MODEL) *llm = 1;
                break;
            }
        }
    }
    return ar;
}

static int b64_value(unsigned char ch) {
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9') return ch - '0' + 52;
    if (ch == '+') return 62;
    if (ch == '/') return 63;
    return -1;
}

/* An OTLP id as normalise_id reads it, written to out as n lowercase hex characters: hex of n
 * characters in either case, or (protobuf-JSON) standard base64 of its n/2 bytes with exactly
 * its padding; bits beyond the last byte are ignored, as binascii does. Anything else (which
 * Python reads as no id) goes the Python way. */
static int norm_id(const char *s, size_t len, int esc, size_t n, char *out) {
    static const char HEX[] = "0123456789abcdef";
    if (esc) return FAIL;
    if (len == n) {
        for (size_t i = 0; i < n; i++) {
            char ch = s[i];
            if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')) out[i] = ch;
            else if (ch >= 'A' && ch <= 'F') out[i] = (char)(ch + 32);
            else return FAIL;
        }
        return 0;
    }
    size_t bytes = n / 2, chars = (bytes * 8 + 5) / 6, pad = (4 - chars % 4) % 4;
    if (len != chars + pad) return FAIL;
    for (size_t i = chars; i < len; i++)
        if (s[i] != '=') return FAIL;
    uint32_t acc = 0;
    int bits = 0;
    size_t done = 0;
    for (size_t i = 0; i < chars; i++) {
        int v = b64_value((unsigned char)s[i]);
        if (v < 0) return FAIL;
        acc = ((acc << 6) | (uint32_t)v) & 0xFFFFFF;
        bits += 6;
        if (bits >= 8 && done < bytes) {
            bits -= 8;
            unsigned byte = (acc >> bits) & 0xFF;
            out[2 * done] = HEX[byte >> 4];
            out[2 * done + 1] = HEX[byte & 15];
            done++;
        }
    }
    return done == bytes ? 0 : FAIL;
}

/* startTimeUnixNano and friends: int(value or 0) of a digit string or an integer. */
static int unix_nano(Cur *c, int64_t *out) {
    ws(c);
    const char *s;
    size_t n;
    int x;
    if (is_null(c)) {
        *out = 0;
        return 0;
    }
    if (c->p < c->end && *c->p == '"') {
        if (scan_string(c, &s, &n, &x) || x) return FAIL;
    } else if (scan_number(c, &s, &n, &x) || !x) {
        return FAIL;
    }
    /* up to 19 digits (nanoseconds since 1970 need them), no sign */
    if (n == 0 || n > 19) return FAIL;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return FAIL;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > (uint64_t)INT64_MAX) return FAIL;
    *out = (int64_t)v;
    return 0;
}

#define MAX_EVENTS 64

typedef struct {
    const char *s;
    size_t len;
    int esc;
} Str;


/* A string attribute value for an inferred column: a string or null; any other type goes the
 * Python way (it would change the column's type). */
static int attr_text(const AttrVal *v, int id) {
    if (v->type == T_ABSENT || v->type == T_NONE) return put_null(id);
    if (v->type != T_STR) return FAIL;
    return put_json_str(id, v->s, v->len, v->esc);
}

/* The first of two keys that is not None (records.first_value). */
static const AttrVal *first_of(const AttrVal *vals, int a, int b) {
    if (vals[a].type != T_ABSENT && vals[a].type != T_NONE) return &vals[a];
    return &vals[b];
}

/* as_int of an attribute: integers only here. */
static int attr_int(const AttrVal *v, int64_t *out, int *present) {
    *present = 0;
    if (v->type == T_ABSENT || v->type == T_NONE) return 0;
    if (v->type != T_INT) return FAIL;
    *out = v->i;
    *present = 1;
    return 0;
}

static int parse_span(Cur *c, const char *fname, size_t fnlen, long long line_no) {
    uint64_t seen = 0;
    int st = 0, r, esc;
    const char *k;
    size_t kl;
    Str trace = {0}, span = {0}, parent = {0}, name = {"", 0, 0};
    char trace_id[32], span_id[16], parent_id[16]; /* normalised: lowercase hex */
    int parent_null = 1, name_null = 0, status_code = 0;
    int64_t start = 0, end = 0;
    AttrVal vals[N_ATTRS];
    memset(vals, 0, sizeof vals);
    int llm = 0, nevents = 0;
    Str payloads[MAX_EVENTS];
    if (obj_open(c)) return FAIL;
    while ((r = obj_key(c, &st, &k, &kl)) == 1) {
        if (KEY("traceId")) {
            ONCE(0);
            if (scan_string(c, &trace.s, &trace.len, &trace.esc)) return FAIL;
        } else if (KEY("spanId")) {
            ONCE(1);
            if (scan_string(c, &span.s, &span.len, &span.esc)) return FAIL;
        } else if (KEY("parentSpanId")) {
            ONCE(2);
            if (!is_null(c)) {
                if (scan_string(c, &parent.s, &parent.len, &parent.esc)) return FAIL;
                /* "" is no parent; else lowercase hex */
                if (parent.len && norm_id(parent.s, parent.len, parent.esc, 16, parent_id))
                    return FAIL;
                parent_null = parent.len == 0;
            }
        } else if (KEY("name")) {
            ONCE(3);
            if (is_null(c)) name_null = 1;
            else if (scan_string(c, &name.s, &name.len, &name.esc)) return FAIL;
        } else if (KEY("startTimeUnixNano")) {
            ONCE(4);
            if (unix_nano(c, &start)) return FAIL;
        } else if (KEY("endTimeUnixNano")) {
            ONCE(5);
            if (unix_nano(c, &end)) return FAIL;
        } else if (KEY("attributes")) {
            ONCE(6);
            if (attributes(c, vals, &llm)) return FAIL;
        } else if (KEY("events")) {
            ONCE(7);
            if (is_null(c)) continue;
            int ast = 0, ar;
            if (arr_open(c)) return FAIL;
            while ((ar = arr_next(c, &ast)) == 1) {
                int est = 0, er, decision = 0, have_name = 0, have_attrs = 0;
                const char *ek;
                AttrVal evals[N_ATTRS];
                memset(evals, 0, sizeof evals);
                int unused = 0;
                if (obj_open(c)) return FAIL;
                while ((er = obj_key(c, &est, &ek, &kl)) == 1) {
                    k = ek;
                    if (KEY("name")) {
                        const char *s;
                        size_t n;
                        if (have_name++) return FAIL;
                        ws(c);
                        if (scan_string(c, &s, &n, &esc)) return FAIL;
                        if (!esc && n == sizeof DECISION_EVENT - 1 &&
                            memcmp(s, DECISION_EVENT, n) == 0)
                            decision = 1;
                        else if (esc) return FAIL; /* might spell the decision event's name */
                    } else if (KEY("attributes")) {
                        /* repeated, msgspec keeps the last list: the Python way */
                        if (have_attrs++ || attributes(c, evals, &unused)) return FAIL;
                    } else if (skip_value(c, 3)) {
                        return FAIL;
                    }
                }
                if (er) return FAIL;
                if (!decision) continue;
                if (evals[A_PAYLOAD].type != T_STR || nevents == MAX_EVENTS) return FAIL;
                payloads[nevents].s = evals[A_PAYLOAD].s;
                payloads[nevents].len = evals[A_PAYLOAD].len;
                payloads[nevents].esc = evals[A_PAYLOAD].esc;
                nevents++;
            }
            if (ar) return FAIL;
        } else if (KEY("status")) {
            ONCE(8);
            if (is_null(c)) continue;
            int sst = 0, sr;
            const char *sk;
            if (obj_open(c)) return FAIL;
            while ((sr = obj_key(c, &sst, &sk, &kl)) == 1) {
                k = sk;
                if (KEY("code")) {
                    const char *s;
                    size_t n;
                    int x;
                    int64_t v;
                    ws(c);
                    if (is_null(c)) status_code = 0;
                    else if (c->p < c->end && *c->p == '"') {
                        /* protobuf-JSON variants: "2", "STATUS_CODE_ERROR" (status_text in
                         * normalize.py); any other text is no code: "unset" */
                        if (scan_string(c, &s, &n, &x) || x) return FAIL;
                        if (n == 1 && (*s == '1' || *s == '2')) status_code = *s - '0';
                        else if (n == 14 && memcmp(s, "STATUS_CODE_OK", 14) == 0) status_code = 1;
                        else if (n == 17 && memcmp(s, "STATUS_CODE_ERROR", 17) == 0)
                            status_code = 2;
                        else status_code = 0;
                    } else if (scan_number(c, &s, &n, &x) || !x || parse_int(s, n, &v)) {
                        return FAIL;
                    } else {
                        status_code = (v == 1 || v == 2) ? (int)v : 0;
                    }
                } else if (skip_value(c, 3)) {
                    return FAIL;
                }
            }
            if (sr) return FAIL;
        } else if (skip_value(c, 2)) {
            return FAIL;
        }
    }
    if (r) return FAIL;
    if (!(nevents || llm)) return 0; /* neither a decision nor a call: no record */
    if (!(seen & 1) || !(seen & 2)) return FAIL;
    if (norm_id(trace.s, trace.len, trace.esc, 32, trace_id) ||
        norm_id(span.s, span.len, span.esc, 16, span_id))
        return FAIL;
    /* location: "<file>:<line> span <spanId>" */
    char num[32];
    int numlen = snprintf(num, sizeof num, ":%lld span ", line_no);
    locbuf.len = 0;
    if (buf_put(&locbuf, fname, fnlen) || buf_put(&locbuf, num, (size_t)numlen) ||
        buf_put(&locbuf, span.s, span.len))
        return FAIL;
    for (int e = 0; e < nevents; e++) {
        const char *text = payloads[e].s;
        size_t len = payloads[e].len;
        if (payloads[e].esc) {
            scratch.len = 0;
            if (buf_reserve(&scratch, len)) return FAIL;
            len = unescape(text, len, scratch.p);
            text = scratch.p;
        }
        if (parse_decision(text, len, trace_id, locbuf.p, locbuf.len)) return FAIL;
    }
    if (!llm) return 0;
    /* the LLM call (llm_call in otlp_fast.py) */
    if (put_str(L_TRACE, trace_id, 32) || put_str(L_SPAN, span_id, 16) ||
        put_str(L_LOCATION, locbuf.p, locbuf.len))
        return FAIL;
    if (parent_null ? put_null(L_PARENT) : put_str(L_PARENT, parent_id, 16)) return FAIL;
    if (name_null) {
        if (put_null(L_NAME)) return FAIL;
    } else {
        if (put_json_str(L_NAME, name.s, name.len, name.esc)) return FAIL;
    }
    if (attr_text(first_of(vals, A_PROMPT, A_PROMPT0), L_PROMPT)) return FAIL;
    const AttrVal *req = &vals[A_REQ_MODEL], *resp = &vals[A_RESP_MODEL];
    if (attr_text(req, L_REQ_MODEL)) return FAIL;
    if (attr_text((resp->type == T_ABSENT || resp->type == T_NONE) ? req : resp, L_RESP_MODEL))
        return FAIL;
    if (attr_text(first_of(vals, A_COMPLETION, A_COMPLETION0), L_COMPLETION)) return FAIL;
    int64_t in = 0, out = 0, tot = 0;
    int has_in, has_out, has_tot;
    if (attr_int(first_of(vals, A_IN, A_PROMPT_T), &in, &has_in) ||
        attr_int(first_of(vals, A_OUT, A_COMPLETION_T), &out, &has_out) ||
        attr_int(&vals[A_TOTAL], &tot, &has_tot))
        return FAIL;
    if (!has_tot && has_in && has_out) {
        tot = in + out;
        has_tot = 1;
    }
    if ((has_in ? put_i64(L_IN, in) : put_null(L_IN)) ||
        (has_out ? put_i64(L_OUT, out) : put_null(L_OUT)) ||
        (has_tot ? put_i64(L_TOT, tot) : put_null(L_TOT)))
        return FAIL;
    int64_t diff = end - start; /* both in [0, INT64_MAX]: no overflow */
    if (put_f64(L_DUR, (double)(diff > 0 ? diff : 0) / 1e6)) return FAIL;
    if (start / 1000000 ? put_i64(L_START_MS, start / 1000000) : put_null(L_START_MS))
        return FAIL;
    static const char *STATUS_TEXT[] = {"unset", "ok", "error"};
    if (put_str(L_STATUS, STATUS_TEXT[status_code], strlen(STATUS_TEXT[status_code])))
        return FAIL;
    if (attr_text(&vals[A_TASK], L_TASK)) return FAIL;
    const AttrVal *q = &vals[A_QUALITY];
    if (q->type == T_INT) {
        if (q->i > 999999999999999LL || q->i < -999999999999999LL) return FAIL;
        if (put_f64(L_QUALITY, (double)q->i)) return FAIL;
    } else if (q->type == T_DBL) {
        if (put_f64(L_QUALITY, q->d)) return FAIL;
    } else if (q->type == T_ABSENT || q->type == T_NONE) {
        if (put_null(L_QUALITY)) return FAIL;
    } else {
        return FAIL;
    }
    return attr_text(&vals[A_GROUND_TRUTH], L_GT);
}

/* One export request: {"resourceSpans": [{"scopeSpans": [{"spans": [...]}]}]}. */
static int parse_line(const char *p, const char *end, const char *fname, size_t fnlen,
                      long long line_no) {
    Cur cur = {p, end}, *c = &cur;
    int st = 0, r, have = 0;
    const char *k;
    size_t kl;
    if (obj_open(c)) return FAIL;
    while ((r = obj_key(c, &st, &k, &kl)) == 1) {
        if (!KEY("resourceSpans")) {
            if (skip_value(c, 1)) return FAIL;
            continue;
        }
        if (have++) return FAIL;
        if (is_null(c)) continue;
        int rst = 0, rr;
        if (arr_open(c)) return FAIL;
        while ((rr = arr_next(c, &rst)) == 1) {
            int ost = 0, orr, have_scopes = 0;
            if (obj_open(c)) return FAIL;
            while ((orr = obj_key(c, &ost, &k, &kl)) == 1) {
                if (KEY("instrumentationLibrarySpans")) return FAIL; /* the older name */
                if (!KEY("scopeSpans")) {
                    if (skip_value(c, 3)) return FAIL;
                    continue;
                }
                if (have_scopes++) return FAIL;
                if (is_null(c)) continue;
                int sst = 0, sr;
                if (arr_open(c)) return FAIL;
                while ((sr = arr_next(c, &sst)) == 1) {
                    int pst = 0, pr, have_spans = 0;
                    if (obj_open(c)) return FAIL;
                    while ((pr = obj_key(c, &pst, &k, &kl)) == 1) {
                        if (!KEY("spans")) {
                            if (skip_value(c, 5)) return FAIL;
                            continue;
                        }
                        if (have_spans++) return FAIL;
                        if (is_null(c)) continue;
                        int xst = 0, xr;
                        if (arr_open(c)) return FAIL;
                        while ((xr = arr_next(c, &xst)) == 1)
                            if (parse_span(c, fname, fnlen, line_no)) return FAIL;
                        if (xr) return FAIL;
                    }
                    if (pr) return FAIL;
                }
                if (sr) return FAIL;
            }
            if (orr) return FAIL;
        }
        if (rr) return FAIL;
    }
    if (r || !have) return FAIL;
    ws(c);
    return c->p == c->end ? 0 : FAIL;
}

/* ---------------------------------------------------------------- UTF-8, lines, Python */

static int valid_utf8(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        /* ASCII eight bytes at a time */
        if (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (!(w & 0x8080808080808080ULL)) {
                i += 8;
                continue;
            }
        }
        unsigned char b = s[i];
        if (b < 0x80) {
            i++;
        } else if (b >= 0xC2 && b <= 0xDF) {
            if (i + 1 >= n || (s[i + 1] & 0xC0) != 0x80) return 0;
            i += 2;
        } else if (b >= 0xE0 && b <= 0xEF) {
            if (i + 2 >= n || (s[i + 1] & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80) return 0;
            if (b == 0xE0 && s[i + 1] < 0xA0) return 0;  /* overlong */
            if (b == 0xED && s[i + 1] >= 0xA0) return 0; /* surrogates */
            i += 3;
        } else if (b >= 0xF0 && b <= 0xF4) {
            if (i + 3 >= n || (s[i + 1] & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80 ||
                (s[i + 3] & 0xC0) != 0x80)
                return 0;
            if (b == 0xF0 && s[i + 1] < 0x90) return 0;
            if (b == 0xF4 && s[i + 1] >= 0x90) return 0;
            i += 4;
        } else {
            return 0;
        }
    }
    return 1;
}

/* bytes.isspace(): space, \t, \n, \r, \x0b, \x0c */
static int all_space(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!(ch == ' ' || (ch >= '\t' && ch <= '\r'))) return 0;
    }
    return 1;
}

/* A block of memory parse() filled, handed to Python without a copy: a read-only buffer that
 * frees the memory when the last Arrow array over it goes. */
typedef struct {
    PyObject_HEAD char *data;
    Py_ssize_t len;
} Block;

static void block_dealloc(Block *b) {
    free(b->data);
    Py_TYPE(b)->tp_free((PyObject *)b);
}

static int block_getbuffer(Block *b, Py_buffer *view, int flags) {
    return PyBuffer_FillInfo(view, (PyObject *)b, b->data, b->len, 1, flags);
}

static PyBufferProcs BLOCK_BUFFER = {(getbufferproc)block_getbuffer, NULL};

static PyTypeObject BlockType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "_otlp_native.Block",
    .tp_basicsize = sizeof(Block),
    .tp_dealloc = (destructor)block_dealloc,
    .tp_as_buffer = &BLOCK_BUFFER,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Memory filled by parse(), read-only, freed with the object.",
};

/* The buffer as a Block; the buffer is left empty (its memory now belongs to the Block). */
static PyObject *take_block(Buf *b) {
    if (!b->p && !(b->p = malloc(1))) return PyErr_NoMemory();
    Block *block = PyObject_New(Block, &BlockType);
    if (!block) return NULL;
    block->data = b->p;
    block->len = (Py_ssize_t)b->len;
    b->p = NULL;
    b->len = b->cap = 0;
    return (PyObject *)block;
}

/* One byte a row as an Arrow bitmap. */
static PyObject *bitmap(const char *bytes, size_t n) {
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)((n + 7) / 8));
    if (!out) return NULL;
    unsigned char *bits = (unsigned char *)PyBytes_AS_STRING(out);
    memset(bits, 0, (n + 7) / 8);
    for (size_t i = 0; i < n; i++)
        if (bytes[i]) bits[i >> 3] |= (unsigned char)(1 << (i & 7));
    return out;
}

/* (length, null count, validity bitmap or None, data, offsets or None) of one column. */
static PyObject *export_column(int id) {
    Col *c = &cols[id];
    PyObject *valid = NULL, *data = NULL, *offs = NULL;
    if (c->nulls) {
        if (!(valid = bitmap(c->valid.p, c->n))) goto fail;
    } else {
        valid = Py_NewRef(Py_None);
    }
    data = COL_KINDS[id] == K_BOOL ? bitmap(c->data.p, c->n) : take_block(&c->data);
    if (!data) goto fail;
    offs = COL_KINDS[id] == K_STR ? take_block(&c->offs) : Py_NewRef(Py_None);
    if (!offs) goto fail;
    return Py_BuildValue("(nnNNN)", (Py_ssize_t)c->n, (Py_ssize_t)c->nulls, valid, data, offs);
fail:
    Py_XDECREF(valid);
    Py_XDECREF(data);
    Py_XDECREF(offs);
    return NULL;
}

/* Frees what a call kept that Python did not take: a thread keeps no memory between calls
 * (threads of a pool end without telling this module). */
static void release_buffers(void) {
    Buf *extra[] = {&scratch, &locbuf};
    for (int i = 0; i < NCOLS; i++) {
        Buf *own[] = {&cols[i].data, &cols[i].offs, &cols[i].valid};
        for (int b = 0; b < 3; b++) {
            free(own[b]->p);
            own[b]->p = NULL;
            own[b]->len = own[b]->cap = 0;
        }
    }
    for (int b = 0; b < 2; b++) {
        free(extra[b]->p);
        extra[b]->p = NULL;
        extra[b]->len = extra[b]->cap = 0;
    }
}

/* A call ends early (at a line boundary) once a column holds this much text, far from the 2 GiB
 * that Arrow's 32-bit offsets allow: long prompts fill a column long before max_records. */
#define TEXT_PER_CALL ((size_t)256 << 20)

static int text_full(void) {
    for (int i = 0; i < NCOLS; i++)
        if (COL_KINDS[i] == K_STR && cols[i].data.len >= TEXT_PER_CALL) return 1;
    return 0;
}

/* Empty columns for a parse() call (a string column starts with its 0 offset). */
static int start_columns(void) {
    for (int i = 0; i < NCOLS; i++) {
        Col *c = &cols[i];
        c->n = c->nulls = 0;
        c->data.len = c->offs.len = c->valid.len = 0;
        if (buf_reserve(&c->data, 64)) return -1; /* never a NULL base for last_str() */
        if (COL_KINDS[i] == K_STR) {
            int32_t zero = 0;
            if (buf_put(&c->offs, &zero, 4)) return -1;
        }
    }
    return 0;
}

static PyObject *py_parse(PyObject *self, PyObject *args) {
    Py_buffer buf;
    Py_ssize_t start, end, max_records;
    long long line_no;
    const char *fname;
    Py_ssize_t fnlen;
    if (!PyArg_ParseTuple(args, "y*nnLy#n", &buf, &start, &end, &line_no, &fname, &fnlen,
                          &max_records))
        return NULL;
    if (start < 0 || end < start || end > buf.len) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "start/end outside the buffer");
        return NULL;
    }
    State *state = calloc(1, sizeof(State));
    if (!state) {
        PyBuffer_Release(&buf);
        return PyErr_NoMemory();
    }
    tstate = state;
    oom = 0;
    const char *base = buf.buf;
    Py_ssize_t pos = start;
    int stopped = 0;
    Mark *marks = malloc(sizeof(Mark) * NCOLS);
    if (!marks || start_columns()) {
        free(marks);
        release_buffers();
        tstate = NULL;
        free(state);
        PyBuffer_Release(&buf);
        return PyErr_NoMemory();
    }
    /* The scan touches no Python object (the buffer is held until it is released below), so
     * other threads run meanwhile: several files are normalised on threads at once. */
    Py_BEGIN_ALLOW_THREADS
    while (pos < end) {
        const char *line = base + pos;
        int ascii; /* every byte of the line is ASCII: no UTF-8 check needed */
        const char *nl = line_end(line, base + buf.len, &ascii);
        Py_ssize_t next = nl ? (Py_ssize_t)(nl - base) + 1 : buf.len;
        size_t len = (size_t)(next - pos);
        if (!all_space(line, len)) {
            marks_take(marks);
            if (!(ascii || valid_utf8((const unsigned char *)line, len)) ||
                parse_line(line, line + len, fname, (size_t)fnlen, line_no)) {
                marks_restore(marks);
                stopped = 1;
                break;
            }
        }
        pos = next;
        line_no++;
        if ((Py_ssize_t)cols[D_EVENT_ID].n >= max_records ||
            (Py_ssize_t)cols[L_TRACE].n >= max_records || text_full())
            break;
    }
    Py_END_ALLOW_THREADS
    free(marks);
    PyBuffer_Release(&buf);
    PyObject *columns = oom ? NULL : PyList_New(NCOLS);
    for (int i = 0; columns && i < NCOLS; i++) {
        PyObject *col = export_column(i);
        if (!col) Py_CLEAR(columns);
        else PyList_SET_ITEM(columns, i, col);
    }
    release_buffers();
    int failed = oom;
    tstate = NULL;
    free(state);
    if (failed) return PyErr_NoMemory();
    if (!columns) return NULL;
    return Py_BuildValue("(NnLO)", columns, pos, line_no, stopped ? Py_True : Py_False);
}

static PyObject *py_columns(PyObject *self, PyObject *noargs) {
    static const char *KIND_NAMES[] = {"string", "int64", "float64", "bool"};
    PyObject *out = PyList_New(NCOLS);
    if (!out) return NULL;
    for (int i = 0; i < NCOLS; i++) {
        PyObject *item = Py_BuildValue("(ss)", COL_NAMES[i], KIND_NAMES[COL_KINDS[i]]);
        if (!item) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, item);
    }
    return out;
}

/* Use the scanners up to this level (0 portable, 1 AVX2, 2 AVX2 and AVX-512), capped at what
 * the CPU has; returns the level in use before. */
static long set_level(long level) {
    long previous = use_avx2 + use_avx512;
    if (level > simd_supported) level = simd_supported;
    use_avx2 = level >= 1;
    use_avx512 = level >= 2;
    return previous;
}

/* set_simd(level) -> previous: set_level, for the tests, which compare the paths; not while
 * parse() runs. */
static PyObject *py_set_simd(PyObject *self, PyObject *arg) {
    (void)self;
    long level = PyLong_AsLong(arg);
    if (level == -1 && PyErr_Occurred()) return NULL;
    return PyLong_FromLong(set_level(level));
}

/* line_end(data, start) -> (index of the first newline from start or len(data), ascii): the
 * parser's line split at the current level, for the tests. */
static PyObject *py_line_end(PyObject *self, PyObject *args) {
    Py_buffer buf;
    Py_ssize_t start;
    if (!PyArg_ParseTuple(args, "y*n", &buf, &start)) return NULL;
    if (start < 0 || start > buf.len) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "start out of range");
        return NULL;
    }
    const char *base = buf.buf;
    int ascii;
    const char *nl = line_end(base + start, base + buf.len, &ascii);
    Py_ssize_t at = nl ? (Py_ssize_t)(nl - base) : buf.len;
    PyBuffer_Release(&buf);
    return Py_BuildValue("(ni)", at, ascii);
}

static PyMethodDef METHODS[] = {
    {"parse", py_parse, METH_VARARGS,
     "parse(buffer, start, end, first_line, file_name, max_records) -> "
     "(columns, next_offset, next_line, stopped)"},
    {"set_simd", py_set_simd, METH_O, "set_simd(level) -> previous level (tests)"},
    {"line_end", py_line_end, METH_VARARGS, "line_end(data, start) -> (newline index, ascii)"},
    {"columns", py_columns, METH_NOARGS, "columns() -> [(name, kind)] in parse()'s order"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_otlp_native",
                                    "Compiled OTLP JSON normaliser (see otlp_native.py).", -1,
                                    METHODS};

#ifndef SOURCE_SHA256
#define SOURCE_SHA256 "unknown"
#endif

PyMODINIT_FUNC PyInit__otlp_native(void) {
    if (PyType_Ready(&BlockType) < 0) return NULL;
    PyObject *module = PyModule_Create(&MODULE);
#ifdef HAVE_AVX2_PATH
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) simd_supported = 1;
#ifdef HAVE_AVX512_PATH
    if (simd_supported && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vbmi2"))
        simd_supported = 2;
#endif
    /* ROUTEIQ_NATIVE_SIMD caps the level: 0 portable, 1 AVX2 only */
    const char *simd = getenv("ROUTEIQ_NATIVE_SIMD");
    set_level(simd && *simd >= '0' && *simd <= '2' ? *simd - '0' : simd_supported);
#endif
    if (module && (PyModule_AddStringConstant(module, "SOURCE_SHA256", SOURCE_SHA256) < 0 ||
                   PyModule_AddIntConstant(module, "SIMD", use_avx2 + use_avx512) < 0))
        Py_CLEAR(module);
    return module;
}
