/*
 * fli-bench-c: the C reference of `sslcat bench`. What a competent C programmer writes with OpenSSL:
 * blocking sockets, SSL_set_fd, one SSL_CTX per side reused for every connection, default settings
 * otherwise; the client verifies the server's certificate and host name as the Swift side does.
 * Client and server run in one process, on two threads, over loopback TCP.
 *
 *   fli-bench-c CA CERT KEY bulk WRITE_SIZE TOTAL_BYTES   -> "bulk WRITE_SIZE SECONDS BYTES WIRE_BYTES"
 *   fli-bench-c CA CERT KEY concurrent CONNECTIONS WRITE_SIZE TOTAL_BYTES
 *                                                         -> "concurrent CONNECTIONS SECONDS BYTES"
 *   fli-bench-c CA CERT KEY handshake COUNT RESUME(0|1)   -> "handshake COUNT SECONDS REUSED"
 *   fli-bench-c CA CERT KEY memory CONNECTIONS            -> "memory CONNECTIONS BYTES_PER_CONNECTION"
 *
 * WIRE_BYTES is what the server read from its socket (BIO_number_read: records with their headers and
 * tags, and the client's handshake messages), from which `sslcat bench` checks one record per write.
 * concurrent: CONNECTIONS clients (a thread each) connect and handshake; then all at once each sends
 * TOTAL_BYTES / CONNECTIONS in WRITE_SIZE writes to its own server thread; SECONDS runs from the start
 * to the last server's last byte.
 *
 * Both sides speak TLS 1.3 with TLS_AES_128_GCM_SHA256; the server reads with 16 KiB buffers.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *ca_file, *cert_file, *key_file;
static SSL_CTX *server_ctx, *client_ctx;
static int listen_fd, port;

static void die(const char *what) {
    fprintf(stderr, "fli-bench-c: %s failed: ", what);
    ERR_print_errors_fp(stderr);
    fprintf(stderr, " (errno %d: %s)\n", errno, strerror(errno));
    exit(2);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void make_contexts(void) {
    server_ctx = SSL_CTX_new(TLS_server_method());
    client_ctx = SSL_CTX_new(TLS_client_method());
    if (!server_ctx || !client_ctx) die("SSL_CTX_new");
    if (SSL_CTX_use_certificate_chain_file(server_ctx, cert_file) != 1) die("SSL_CTX_use_certificate_chain_file");
    if (SSL_CTX_use_PrivateKey_file(server_ctx, key_file, SSL_FILETYPE_PEM) != 1) die("SSL_CTX_use_PrivateKey_file");
    if (SSL_CTX_load_verify_locations(client_ctx, ca_file, NULL) != 1) die("SSL_CTX_load_verify_locations");
    SSL_CTX_set_verify(client_ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX *both[] = {server_ctx, client_ctx};
    for (int i = 0; i < 2; i++) {
        SSL_CTX_set_min_proto_version(both[i], TLS1_3_VERSION);
        if (SSL_CTX_set_ciphersuites(both[i], "TLS_AES_128_GCM_SHA256") != 1) die("SSL_CTX_set_ciphersuites");
    }
    SSL_CTX_set_session_cache_mode(client_ctx, SSL_SESS_CACHE_CLIENT);
}

static void start_listening(void) {
    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (listen_fd < 0) die("socket");
    int one = 1;
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(listen_fd, (struct sockaddr *)&a, sizeof a) != 0) die("bind");
    if (listen(listen_fd, 4096) != 0) die("listen");
    socklen_t len = sizeof a;
    getsockname(listen_fd, (struct sockaddr *)&a, &len);
    port = ntohs(a.sin_port);
}

static int connect_loopback(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) die("connect");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static int accept_one(void) {
    int fd = accept(listen_fd, NULL, NULL);
    if (fd < 0) die("accept");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static SSL *client_ssl(int fd, SSL_SESSION *session) {
    SSL *ssl = SSL_new(client_ctx);
    if (!ssl) die("SSL_new");
    SSL_set_fd(ssl, fd);
    if (SSL_set1_host(ssl, "localhost") != 1) die("SSL_set1_host");
    if (SSL_set_tlsext_host_name(ssl, "localhost") != 1) die("SSL_set_tlsext_host_name");
    if (session) SSL_set_session(ssl, session);
    if (SSL_connect(ssl) != 1) die("SSL_connect");
    return ssl;
}

static SSL *server_ssl(int fd) {
    SSL *ssl = SSL_new(server_ctx);
    if (!ssl) die("SSL_new");
    SSL_set_fd(ssl, fd);
    if (SSL_accept(ssl) != 1) die("SSL_accept");
    return ssl;
}

/* ---- bulk ---- */
static long long bulk_total;
static double bulk_end;
static unsigned long long bulk_wire;

static void *bulk_server(void *arg) {
    (void)arg;
    int fd = accept_one();
    SSL *ssl = server_ssl(fd);
    char buf[16384];
    long long got = 0;
    while (got < bulk_total) {
        int n = SSL_read(ssl, buf, sizeof buf);
        if (n <= 0) die("SSL_read");
        got += n;
    }
    bulk_end = now();
    bulk_wire = BIO_number_read(SSL_get_rbio(ssl));
    SSL_write(ssl, "k", 1);
    SSL_shutdown(ssl);
    SSL_free(ssl);
    close(fd);
    return NULL;
}

static void bulk(int write_size, long long total) {
    bulk_total = total;
    pthread_t t;
    pthread_create(&t, NULL, bulk_server, NULL);
    int fd = connect_loopback();
    SSL *ssl = client_ssl(fd, NULL);
    char *buf = malloc(write_size);
    for (int i = 0; i < write_size; i++) buf[i] = (char)(i * 7);
    double start = now();
    long long sent = 0;
    while (sent < total) {
        int n = (int)(total - sent < write_size ? total - sent : write_size);
        if (SSL_write(ssl, buf, n) != n) die("SSL_write");
        sent += n;
    }
    char ack;
    if (SSL_read(ssl, &ack, 1) != 1) die("SSL_read ack");
    pthread_join(t, NULL);
    printf("bulk %d %.6f %lld %llu\n", write_size, bulk_end - start, total, bulk_wire);
    SSL_shutdown(ssl);
    SSL_free(ssl);
    close(fd);
    free(buf);
}

/* ---- concurrent connections ---- */
static int cc_count, cc_write_size;
static long long cc_each;
static pthread_barrier_t cc_ready;
static pthread_mutex_t cc_lock = PTHREAD_MUTEX_INITIALIZER;
static double cc_start, cc_end;

static void *cc_server_connection(void *arg) {
    int fd = (int)(long)arg;
    SSL *ssl = server_ssl(fd);
    char buf[16384];
    long long got = 0;
    while (got < cc_each) {
        int n = SSL_read(ssl, buf, sizeof buf);
        if (n <= 0) die("SSL_read");
        got += n;
    }
    double t = now();
    pthread_mutex_lock(&cc_lock);
    if (t > cc_end) cc_end = t;
    pthread_mutex_unlock(&cc_lock);
    if (SSL_write(ssl, "k", 1) != 1) die("SSL_write");
    SSL_shutdown(ssl);
    SSL_free(ssl);
    close(fd);
    return NULL;
}

static void *cc_server(void *arg) {
    pthread_t *threads = arg;
    for (int i = 0; i < cc_count; i++) {
        int fd = accept_one();
        if (pthread_create(&threads[i], NULL, cc_server_connection, (void *)(long)fd) != 0) die("pthread_create");
    }
    return NULL;
}

static void *cc_client(void *arg) {
    (void)arg;
    int fd = connect_loopback();
    SSL *ssl = client_ssl(fd, NULL);
    char *buf = malloc(cc_write_size);
    for (int i = 0; i < cc_write_size; i++) buf[i] = (char)(i * 7);
    /* All connected and handshaken: the main thread takes the start time, then all write at once. */
    pthread_barrier_wait(&cc_ready);
    pthread_barrier_wait(&cc_ready);
    long long sent = 0;
    while (sent < cc_each) {
        int n = (int)(cc_each - sent < cc_write_size ? cc_each - sent : cc_write_size);
        if (SSL_write(ssl, buf, n) != n) die("SSL_write");
        sent += n;
    }
    char ack;
    if (SSL_read(ssl, &ack, 1) != 1) die("SSL_read ack");
    SSL_shutdown(ssl);
    SSL_free(ssl);
    close(fd);
    free(buf);
    return NULL;
}

static void concurrent(int count, int write_size, long long total) {
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    cc_count = count; cc_write_size = write_size; cc_each = total / count;
    pthread_t *servers = calloc(count, sizeof *servers), *clients = calloc(count, sizeof *clients), acceptor;
    pthread_barrier_init(&cc_ready, NULL, count + 1);
    pthread_create(&acceptor, NULL, cc_server, servers);
    for (int i = 0; i < count; i++)
        if (pthread_create(&clients[i], NULL, cc_client, NULL) != 0) die("pthread_create");
    pthread_barrier_wait(&cc_ready);
    cc_start = now();
    pthread_barrier_wait(&cc_ready);
    for (int i = 0; i < count; i++) pthread_join(clients[i], NULL);
    pthread_join(acceptor, NULL);
    for (int i = 0; i < count; i++) pthread_join(servers[i], NULL);
    printf("concurrent %d %.6f %lld\n", count, cc_end - cc_start, cc_each * count);
    pthread_barrier_destroy(&cc_ready);
    free(servers);
    free(clients);
}

/* ---- handshakes ---- */
static int hs_count;

static void *handshake_server(void *arg) {
    int count = *(int *)arg;
    for (int i = 0; i < count; i++) {
        int fd = accept_one();
        SSL *ssl = server_ssl(fd);
        if (SSL_write(ssl, "k", 1) != 1) die("SSL_write");
        SSL_shutdown(ssl);
        SSL_free(ssl);
        close(fd);
    }
    return NULL;
}

/* One client connection: handshake, read the server's byte (which brings the session tickets), close. */
static SSL_SESSION *client_connection(SSL_SESSION *session, int *reused) {
    int fd = connect_loopback();
    SSL *ssl = client_ssl(fd, session);
    char byte;
    if (SSL_read(ssl, &byte, 1) != 1) die("SSL_read");
    if (SSL_session_reused(ssl)) (*reused)++;
    SSL_SESSION *next = SSL_get1_session(ssl);
    SSL_shutdown(ssl);
    SSL_free(ssl);
    close(fd);
    return next;
}

static void handshakes(int count, int resume) {
    int total = count + 1; /* one more: the first connection gives the session to resume */
    pthread_t t;
    pthread_create(&t, NULL, handshake_server, &total);
    int reused = 0;
    SSL_SESSION *session = client_connection(NULL, &reused);
    reused = 0;
    double start = now();
    for (int i = 0; i < count; i++) {
        SSL_SESSION *next = client_connection(resume ? session : NULL, &reused);
        SSL_SESSION_free(session);
        session = next;
    }
    double elapsed = now() - start;
    pthread_join(t, NULL);
    SSL_SESSION_free(session);
    printf("handshake %d %.6f %d\n", count, elapsed, reused);
}

/* ---- idle memory ---- */
static long resident_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, rss = 0;
    if (f) { if (fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0; fclose(f); }
    return rss * sysconf(_SC_PAGESIZE);
}

struct conn { int fd; SSL *ssl; };
static struct conn *server_conns;

static void *memory_server(void *arg) {
    int count = *(int *)arg;
    for (int i = 0; i < count; i++) {
        int fd = accept_one();
        SSL *ssl = server_ssl(fd);
        if (SSL_write(ssl, "k", 1) != 1) die("SSL_write");
        server_conns[i].fd = fd;
        server_conns[i].ssl = ssl;
    }
    return NULL;
}

static void open_idle(int count, struct conn *clients) {
    pthread_t t;
    pthread_create(&t, NULL, memory_server, &count);
    for (int i = 0; i < count; i++) {
        int fd = connect_loopback();
        SSL *ssl = client_ssl(fd, NULL);
        char byte;
        if (SSL_read(ssl, &byte, 1) != 1) die("SSL_read");
        clients[i].fd = fd;
        clients[i].ssl = ssl;
    }
    pthread_join(t, NULL);
}

static void close_all(int count, struct conn *conns) {
    for (int i = 0; i < count; i++) {
        SSL_shutdown(conns[i].ssl);
        SSL_free(conns[i].ssl);
        close(conns[i].fd);
    }
}

static void memory(int count) {
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    struct conn *clients = calloc(count, sizeof *clients);
    server_conns = calloc(count, sizeof *server_conns);
    /* Warm-up: the same work once with a few connections, so that one-time allocations are not counted. */
    open_idle(16, clients);
    close_all(16, clients);
    close_all(16, server_conns);
    long before = resident_bytes();
    open_idle(count, clients);
    long after = resident_bytes();
    printf("memory %d %ld\n", count, (after - before) / count);
    close_all(count, clients);
    close_all(count, server_conns);
    free(clients);
    free(server_conns);
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: fli-bench-c CA CERT KEY bulk WRITE_SIZE TOTAL | handshake COUNT RESUME | memory CONNECTIONS"
                        " | concurrent CONNECTIONS WRITE_SIZE TOTAL\n");
        return 64;
    }
    ca_file = argv[1]; cert_file = argv[2]; key_file = argv[3];
    make_contexts();
    start_listening();
    if (strcmp(argv[4], "bulk") == 0 && argc == 7) bulk(atoi(argv[5]), atoll(argv[6]));
    else if (strcmp(argv[4], "handshake") == 0 && argc == 7) handshakes(atoi(argv[5]), atoi(argv[6]));
    else if (strcmp(argv[4], "memory") == 0 && argc == 6) memory(atoi(argv[5]));
    else if (strcmp(argv[4], "concurrent") == 0 && argc == 8) concurrent(atoi(argv[5]), atoi(argv[6]), atoll(argv[7]));
    else { fprintf(stderr, "fli-bench-c: unknown mode %s\n", argv[4]); return 64; }
    close(listen_fd);
    SSL_CTX_free(server_ctx);
    SSL_CTX_free(client_ctx);
    return 0;
}
