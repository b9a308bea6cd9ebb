/*
 * b64url.h - base64url without padding (RFC 4648 section 5), the text of
 * JSON Web Tokens and of sync tokens.
 *
 * Both kinds of token come back from clients, so decoding is strict:
 * no '=' padding, nothing outside the alphabet, no impossible length
 * and no non-zero bits below the last character's data, so every byte
 * string has exactly one accepted text. The arithmetic is OpenSSL's
 * (EVP_EncodeBlock, EVP_DecodeBlock, standard alphabet); this module
 * translates the alphabet and the padding.
 *
 * Pure functions: no I/O, no global state, safe from any thread.
 */
#ifndef MSG_B64URL_H
#define MSG_B64URL_H

#include <stdbool.h>
#include <stddef.h>

/* True when c is one of the 64 characters of the base64url alphabet. */
bool b64url_is_char(char c);

/* Writes the base64url text of data[0..len) without padding into out,
 * NUL terminated. Returns the text's length, or -1 if it and the NUL do
 * not fit in cap bytes (out is then left unspecified). No bytes give
 * the empty text. */
int b64url_encode(const void *data, size_t len, char *out, size_t cap);

/* Decodes the unpadded base64url text[0..len) into out. Refuses (-1) an
 * empty text, a length of 4k+1, any character outside the alphabet
 * ('=' included), non-zero unused bits in the last character, and a
 * result longer than cap. Returns the number of bytes written. out is
 * unspecified on -1. */
int b64url_decode(const char *text, size_t len, unsigned char *out, size_t cap);

#endif
