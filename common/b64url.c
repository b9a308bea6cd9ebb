/*
 * b64url.c - base64url without padding over OpenSSL's base64. See
 * b64url.h.
 *
 * OpenSSL speaks the standard alphabet with '=' padding, so text is
 * translated on the way ('-' <-> '+', '_' <-> '/') and the padding is
 * dropped after encoding and put back before decoding. The work goes in
 * fixed chunks of whole 4-character groups through small stack buffers:
 * no input length needs a larger scratch buffer, and since each group
 * decodes on its own, the chunks give the same bytes as one call would.
 */
#include "b64url.h"

#include <limits.h>
#include <openssl/evp.h>
#include <string.h>

/* Bytes encoded per EVP_EncodeBlock call: a multiple of 3, so that only
 * the last call can produce padding. */
#define ENCODE_CHUNK 48
/* Characters decoded per EVP_DecodeBlock call: a multiple of 4, so that
 * only the last call needs padding. */
#define DECODE_CHUNK 64

/* Value of a base64url character, or -1. */
static int char_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

bool b64url_is_char(char c)
{
    return char_value(c) >= 0;
}

/* Length of the unpadded text of len bytes: 4 characters per 3 bytes,
 * and 2 or 3 for a final 1 or 2 bytes. */
static size_t encoded_len(size_t len)
{
    return len / 3 * 4 + (len % 3 ? len % 3 + 1 : 0);
}

/* Length of the bytes of a valid unpadded text of len characters. */
static size_t decoded_len(size_t len)
{
    return len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
}

/* Encodes in[0..len), len <= ENCODE_CHUNK, at out without padding and
 * without a NUL. Returns the number of characters written. */
static size_t encode_chunk(const unsigned char *in, size_t len, char *out)
{
    unsigned char std[ENCODE_CHUNK / 3 * 4 + 1];
    int n = EVP_EncodeBlock(std, in, (int)len);

    while (n > 0 && std[n - 1] == '=')
        n--;
    for (int i = 0; i < n; i++)
        out[i] = std[i] == '+' ? '-' : std[i] == '/' ? '_' : (char)std[i];
    return (size_t)n;
}

int b64url_encode(const void *data, size_t len, char *out, size_t cap)
{
    const unsigned char *in = data;
    size_t pos = 0;

    /* Bounded first, so that neither the length nor the int overflows. */
    if (len > INT_MAX / 4 * 3 || encoded_len(len) >= cap)
        return -1;
    for (size_t done = 0; done < len; done += ENCODE_CHUNK) {
        size_t chunk = len - done < ENCODE_CHUNK ? len - done : ENCODE_CHUNK;
        pos += encode_chunk(in + done, chunk, out + pos);
    }
    out[pos] = '\0';
    return (int)pos;
}

/* The strict checks of b64url_decode, before any decoding: every
 * character in the alphabet, and the bits of the last character that
 * fall beyond the last byte all zero (so no two texts decode alike). */
static bool is_canonical(const char *text, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (char_value(text[i]) < 0)
            return false;
    }
    int last = char_value(text[len - 1]);
    size_t rem = len % 4;
    return !(rem == 2 && (last & 0x0F)) && !(rem == 3 && (last & 0x03));
}

/* Decodes text[0..len), len <= DECODE_CHUNK and not 4k+1, of checked
 * characters into out. OpenSSL wants whole padded groups and counts the
 * padding as zero bytes, which are not copied out. Returns the number of
 * bytes written, or -1. */
static int decode_chunk(const char *text, size_t len, unsigned char *out)
{
    char std[DECODE_CHUNK];
    unsigned char bytes[DECODE_CHUNK / 4 * 3];
    size_t pad = len % 4 ? 4 - len % 4 : 0;

    for (size_t i = 0; i < len; i++)
        std[i] = text[i] == '-' ? '+' : text[i] == '_' ? '/' : text[i];
    memset(std + len, '=', pad);
    int n =
        EVP_DecodeBlock(bytes, (const unsigned char *)std, (int)(len + pad));
    if (n < (int)pad)
        return -1;
    n -= (int)pad;
    memcpy(out, bytes, (size_t)n);
    return n;
}

int b64url_decode(const char *text, size_t len, unsigned char *out, size_t cap)
{
    size_t pos = 0;

    if (len == 0 || len > INT_MAX || len % 4 == 1 || decoded_len(len) > cap ||
        !is_canonical(text, len))
        return -1;
    for (size_t done = 0; done < len; done += DECODE_CHUNK) {
        size_t chunk = len - done < DECODE_CHUNK ? len - done : DECODE_CHUNK;
        int n = decode_chunk(text + done, chunk, out + pos);
        if (n < 0)
            return -1;
        pos += (size_t)n;
    }
    return (int)pos;
}
