# leak: a C program that decodes frames into buffers it never frees (malloc in a loop): native
# memory, named by the stack of the process at the freeze
# python: none
# tools: cc eu-stack
# guard: --memory 150M
# run: sh {fixture} {scratch}
# expect-lead: (native_decoder) holds
# expect: memory   native
# expect: stack    decode_frame ← main
cat > "$1/native_decoder.c" <<'C'
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *decode_frame(size_t size) {
    char *frame = malloc(size);
    memset(frame, 7, size); /* the leak: the caller never frees the frame */
    return frame;
}

int main(void) {
    for (;;) {
        decode_frame(256 * 1024);
        usleep(500);
    }
}
C
cc -O0 -g -o "$1/native_decoder" "$1/native_decoder.c" && exec "$1/native_decoder"
