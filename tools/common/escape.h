/*
 * The one escaper of fvmsnap's outputs, for fvmsnap's commands and the stock
 * QEMU code alike: names and values that come from an input (snapshot,
 * block, section and device names, paths, metadata) as JSON strings, as
 * terminal-safe text, and as one-line C escapes. Uses nothing above it.
 */
#ifndef FVMSNAP_COMMON_ESCAPE_H
#define FVMSNAP_COMMON_ESCAPE_H

#include <stddef.h>
#include <stdio.h>

/*
 * The one JSON string writer of every fvmsnap JSON document
 * (doc/fvmsnap-json.md): the string in double quotes; valid UTF-8 passes
 * through; '"' and '\\' are escaped, newline, tab and CR as \n \t \r, other
 * bytes below 0x20 and 0x7f as \u00XX; a byte that is not part of valid
 * UTF-8 (also an overlong form or a surrogate) as \u00XX, its Latin-1
 * reading. The output is valid JSON for any bytes. The _mem form takes a
 * length (NUL bytes in it become \u0000).
 */
void json_str(FILE *f, const char *s);
void json_mem(FILE *f, const void *s, size_t len);

/*
 * Text output of a name that comes from an input, so that it cannot drive
 * the terminal: valid UTF-8 is printed as it is, except control characters
 * (below 0x20, 0x7f, and U+0080..U+009F), which become '?'; so does every
 * byte that is not part of valid UTF-8. Then spaces up to width characters
 * (none when width <= 0). Returns the number of characters printed before
 * the padding.
 */
int text_safe(FILE *f, const char *s, int width);
int text_safe_mem(FILE *f, const void *s, size_t len, int width);

/*
 * s with C escapes so that one value stays one line of ASCII (the list
 * files of unpack, inspect's text tables): backslash, tab, newline, CR as
 * \\ \t \n \r, other bytes outside 0x20..0x7e as \xHH.
 */
void text_escaped(FILE *f, const char *s);

#endif
