// llama-logits: teacher-forced logits of every position from llama.cpp, in the file format of `edgelm logits`
// (n_tokens x n_vocab float32, row-major, little-endian), so the two engines can be compared on one GGUF file.
// Built by setup.sh against the prebuilt llama.cpp of node-llama-cpp; never linked into EdgeLM.
//
//   llama-logits -m MODEL.gguf --ids 1,2,3 -o OUT.bin [-t THREADS] [--kv f32|f16] [--flash-attn] [-v]
//   llama-logits -m MODEL.gguf --tokenize TEXT [--tokenize TEXT2 ...] [--add-special] [--no-parse-special]
//     prints one line of comma-separated token ids per text (one vocabulary load for many texts)
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"
#include "ggml-backend.h"

static bool verbose = false;
static char last_error[512];

static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("llama-logits: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    // The library's own reason (e.g. an unknown tensor type) is the useful part of a load failure.
    if (last_error[0]) fprintf(stderr, " (%s)", last_error);
    fputc('\n', stderr);
    exit(1);
}

// llama.cpp logs a page per load; keep only the last error line unless -v, so failures stay one line.
static void on_log(enum ggml_log_level level, const char *text, void *user) {
    (void)user;
    if (verbose) { fputs(text, stderr); return; }
    if (level == GGML_LOG_LEVEL_ERROR) {
        snprintf(last_error, sizeof last_error, "%s", text);
        size_t n = strlen(last_error);
        while (n > 0 && (last_error[n - 1] == '\n' || last_error[n - 1] == '\r')) last_error[--n] = 0;
    }
}

static void usage(void) {
    fputs("usage: llama-logits -m MODEL.gguf --ids 1,2,3 -o OUT.bin [-t THREADS] [--kv f32|f16] [--flash-attn] [-v]\n"
          "       llama-logits -m MODEL.gguf --tokenize TEXT [--tokenize TEXT2 ...] [--add-special] [--no-parse-special]\n", stderr);
}

static long parse_long(const char *text, const char *what, long min, long max) {
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno || end == text || *end || value < min || value > max) fail("%s '%s' is not a number in %ld..%ld", what, text, min, max);
    return value;
}

static llama_token *parse_ids(const char *list, int *count) {
    size_t cap = 16, n = 0;
    llama_token *ids = malloc(cap * sizeof *ids);
    if (!ids) fail("out of memory");
    const char *p = list;
    while (*p) {
        while (*p == ',' || *p == ' ') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long value = strtol(p, &end, 10);
        if (end == p || errno || value < 0 || value > INT32_MAX || (*end && *end != ',' && *end != ' '))
            fail("'%.20s' is not a token id", p);
        if (n == cap) {
            cap *= 2;
            ids = realloc(ids, cap * sizeof *ids);
            if (!ids) fail("out of memory");
        }
        ids[n++] = (llama_token)value;
        p = end;
    }
    if (n == 0) fail("no token ids in --ids");
    if (n > 1 << 20) fail("%zu token ids are too many", n);
    *count = (int)n;
    return ids;
}

// The CPU backend is a separate library per ISA (haswell, zen4, ...): load them all from libllama's own
// directory so ggml picks the best one this CPU runs.
static void load_backends(void) {
    Dl_info info;
    char dir[PATH_MAX];
    if (dladdr((void *)&llama_backend_init, &info) && info.dli_fname && strlen(info.dli_fname) < sizeof dir) {
        strcpy(dir, info.dli_fname);
        char *slash = strrchr(dir, '/');
        if (slash) { *slash = 0; ggml_backend_load_all_from_path(dir); }
        else ggml_backend_load_all();
    } else {
        ggml_backend_load_all();
    }
    if (ggml_backend_dev_count() == 0) fail("no ggml backend loaded (libggml-cpu-*.so missing next to libllama?)");
}

static void tokenize(const struct llama_vocab *vocab, const char *text, bool add_special, bool parse_special) {
    int32_t length = (int32_t)strlen(text);
    int32_t n = llama_tokenize(vocab, text, length, NULL, 0, add_special, parse_special);
    if (n == INT32_MIN) fail("text too long to tokenize");
    int32_t cap = n < 0 ? -n : n;
    llama_token *tokens = malloc((size_t)(cap > 0 ? cap : 1) * sizeof *tokens);
    if (!tokens) fail("out of memory");
    n = llama_tokenize(vocab, text, length, tokens, cap, add_special, parse_special);
    if (n < 0) fail("tokenize failed");
    for (int32_t i = 0; i < n; i++) printf(i ? ",%d" : "%d", tokens[i]);
    putchar('\n');
    free(tokens);
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *ids_text = NULL, *out_path = NULL;
    const char **texts = calloc((size_t)argc, sizeof *texts);
    int n_texts = 0;
    if (!texts) fail("out of memory");
    int threads = 0;
    bool kv_f16 = false, flash_attn = false, add_special = false, parse_special = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(); return 0; }
        else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) verbose = true;
        else if (!strcmp(a, "--flash-attn")) flash_attn = true;
        else if (!strcmp(a, "--add-special")) add_special = true;
        else if (!strcmp(a, "--no-parse-special")) parse_special = false;
        else if (!has_value && (!strcmp(a, "-m") || !strcmp(a, "--ids") || !strcmp(a, "-o") || !strcmp(a, "-t") ||
                                !strcmp(a, "--kv") || !strcmp(a, "--tokenize"))) fail("%s needs a value", a);
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) model_path = argv[++i];
        else if (!strcmp(a, "--ids")) ids_text = argv[++i];
        else if (!strcmp(a, "-o") || !strcmp(a, "--out")) out_path = argv[++i];
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) threads = (int)parse_long(argv[++i], "thread count", 1, 1024);
        else if (!strcmp(a, "--tokenize")) texts[n_texts++] = argv[++i];
        else if (!strcmp(a, "--kv")) {
            const char *kv = argv[++i];
            if (!strcmp(kv, "f16")) kv_f16 = true;
            else if (strcmp(kv, "f32")) fail("--kv must be f32 or f16, not '%s'", kv);
        }
        else { usage(); fail("unknown argument '%s'", a); }
    }
    if (!model_path) { usage(); fail("-m MODEL is required"); }
    if (!n_texts && (!ids_text || !out_path)) { usage(); fail("give --ids LIST -o OUT, or --tokenize TEXT"); }
    FILE *probe = fopen(model_path, "rb");
    if (!probe) fail("cannot open model '%s': %s", model_path, strerror(errno));
    fclose(probe);

    llama_log_set(on_log, NULL);
    load_backends();
    llama_backend_init();

    struct llama_model_params mp = llama_model_default_params();
    mp.vocab_only = n_texts > 0;
    struct llama_model *model = llama_model_load_from_file(model_path, mp);
    if (!model) fail("llama.cpp could not load '%s'", model_path);
    const struct llama_vocab *vocab = llama_model_get_vocab(model);

    if (n_texts) {
        for (int i = 0; i < n_texts; i++) tokenize(vocab, texts[i], add_special, parse_special);
        llama_model_free(model);
        return 0;
    }

    int n_tokens;
    llama_token *ids = parse_ids(ids_text, &n_tokens);
    int32_t n_vocab = llama_vocab_n_tokens(vocab);
    for (int i = 0; i < n_tokens; i++)
        if (ids[i] >= n_vocab) fail("token id %d is outside the vocabulary (0..%d)", ids[i], n_vocab - 1);
    if (n_tokens > llama_model_n_ctx_train(model)) fail("%d tokens exceed the model's context of %d", n_tokens, llama_model_n_ctx_train(model));

    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)n_tokens;
    cp.n_batch = (uint32_t)n_tokens;
    cp.n_ubatch = (uint32_t)n_tokens;
    cp.n_seq_max = 1;
    if (threads > 0) { cp.n_threads = threads; cp.n_threads_batch = threads; }
    // F32 KV cache and plain attention by default: the reference should add as little rounding as it can.
    cp.type_k = kv_f16 ? GGML_TYPE_F16 : GGML_TYPE_F32;
    cp.type_v = kv_f16 ? GGML_TYPE_F16 : GGML_TYPE_F32;
    cp.flash_attn_type = flash_attn ? LLAMA_FLASH_ATTN_TYPE_ENABLED : LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.no_perf = true;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) fail("llama.cpp could not create a context for %d tokens", n_tokens);

    struct llama_batch batch = llama_batch_init(n_tokens, 0, 1);
    for (int i = 0; i < n_tokens; i++) {
        batch.token[i] = ids[i];
        batch.pos[i] = i;
        batch.n_seq_id[i] = 1;
        batch.seq_id[i][0] = 0;
        batch.logits[i] = 1;
    }
    batch.n_tokens = n_tokens;
    int32_t status = llama_decode(ctx, batch);
    if (status != 0) fail("llama_decode returned %d", status);

    char tmp_path[PATH_MAX];
    if (snprintf(tmp_path, sizeof tmp_path, "%s.tmp", out_path) >= (int)sizeof tmp_path) fail("output path too long");
    FILE *out = fopen(tmp_path, "wb");
    if (!out) fail("cannot write '%s': %s", tmp_path, strerror(errno));
    for (int i = 0; i < n_tokens; i++) {
        const float *row = llama_get_logits_ith(ctx, i);
        if (!row) fail("no logits for position %d", i);
        // x86-64 and arm64 Linux are little-endian, so the floats go out as they are in memory.
        if (fwrite(row, sizeof(float), (size_t)n_vocab, out) != (size_t)n_vocab) fail("write to '%s' failed", tmp_path);
    }
    if (fclose(out) != 0) fail("write to '%s' failed", tmp_path);
    if (rename(tmp_path, out_path) != 0) fail("cannot rename '%s' to '%s': %s", tmp_path, out_path, strerror(errno));
    fprintf(stderr, "wrote %d x %d float32 logits to %s\n", n_tokens, n_vocab, out_path);

    llama_batch_free(batch);
    llama_free(ctx);
    llama_model_free(model);
    free(ids);
    return 0;
}
