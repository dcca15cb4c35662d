// The benchmark's load generator, as the sidecar behaves: one connection per message, a 4-byte
// big-endian length and the envelope, then the whole answer is read and the connection closed.
// Sequential per thread, one thread per concurrent client. A C client, not Node: on a 2-core machine a
// Node client spends ~0.1 ms of CPU per small message next to the runtime it measures, and the real
// sidecar (Go) spends a few microseconds.
//
//   bench-client SOCKET N FRAME_FILE [CONCURRENCY]
//
// FRAME_FILE holds the whole request (length prefix included). Prints one latency per line in
// microseconds, then `elapsed <microseconds>` for the whole run; exits 1 if any answer was missing,
// short or an error.
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_un address;
static const char *frame;
static size_t frame_size;
static int total;
static int issued;
static int failures;
static double *latency;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int send_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t k = write(fd, p, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return -1;
    p += k;
    n -= (size_t)k;
  }
  return 0;
}

static int recv_all(int fd, char *p, size_t n) {
  while (n > 0) {
    ssize_t k = read(fd, p, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return -1;
    p += k;
    n -= (size_t)k;
  }
  return 0;
}

/** One exchange; 0 when the answer is a complete, non-error array. */
static int exchange(char **answer, size_t *capacity) {
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  int ok = -1;
  unsigned char head[4];
  if (connect(fd, (struct sockaddr *)&address, sizeof address) == 0 && send_all(fd, frame, frame_size) == 0 &&
      recv_all(fd, (char *)head, 4) == 0) {
    size_t n = ((size_t)head[0] << 24) | ((size_t)head[1] << 16) | ((size_t)head[2] << 8) | head[3];
    if (n > *capacity) {
      *answer = realloc(*answer, n);
      *capacity = n;
    }
    if (n > 0 && *answer && recv_all(fd, *answer, n) == 0 && (*answer)[0] == '[') {
      // An error answer is a one-element array whose object starts with "error".
      ok = n >= 10 && memcmp(*answer, "[{\"error\"", 9) == 0 ? -1 : 0;
    }
  }
  close(fd);
  return ok;
}

static void *client(void *unused) {
  (void)unused;
  char *answer = NULL;
  size_t capacity = 0;
  for (;;) {
    pthread_mutex_lock(&lock);
    int i = issued < total ? issued++ : -1;
    pthread_mutex_unlock(&lock);
    if (i < 0) break;
    double start = now_us();
    int failed = exchange(&answer, &capacity);
    latency[i] = now_us() - start;
    if (failed) {
      pthread_mutex_lock(&lock);
      failures++;
      pthread_mutex_unlock(&lock);
    }
  }
  free(answer);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s SOCKET N FRAME_FILE [CONCURRENCY]\n", argv[0]);
    return 2;
  }
  address.sun_family = AF_UNIX;
  strncpy(address.sun_path, argv[1], sizeof address.sun_path - 1);
  total = atoi(argv[2]);
  int concurrency = argc > 4 ? atoi(argv[4]) : 1;
  if (total <= 0 || concurrency <= 0 || concurrency > 1024) return 2;
  FILE *f = fopen(argv[3], "rb");
  if (!f) return 2;
  fseek(f, 0, SEEK_END);
  frame_size = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buffer = malloc(frame_size);
  if (!buffer || fread(buffer, 1, frame_size, f) != frame_size) return 2;
  fclose(f);
  frame = buffer;
  latency = calloc((size_t)total, sizeof *latency);
  pthread_t threads[1024];
  double start = now_us();
  for (int i = 0; i < concurrency; i++) pthread_create(&threads[i], NULL, client, NULL);
  for (int i = 0; i < concurrency; i++) pthread_join(threads[i], NULL);
  double elapsed = now_us() - start;
  for (int i = 0; i < total; i++) printf("%.1f\n", latency[i]);
  printf("elapsed %.0f\n", elapsed);
  if (failures) fprintf(stderr, "%d of %d exchanges failed\n", failures, total);
  return failures ? 1 : 0;
}
