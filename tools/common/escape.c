/*
 * Escaping of input-controlled names for JSON and for the terminal (see
 * escape.h). One UTF-8 validator serves both, so that JSON output and text
 * output agree on what a valid character is.
 */
#include <string.h>

#include "escape.h"

void text_escaped(FILE *f, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		switch (c) {
		case '\\': fputs("\\\\", f); break;
		case '\t': fputs("\\t", f); break;
		case '\n': fputs("\\n", f); break;
		case '\r': fputs("\\r", f); break;
		default:
			if (c < 0x20 || c > 0x7e)
				fprintf(f, "\\x%02x", c);
			else
				fputc(c, f);
		}
	}
}

/*
 * Length of the valid UTF-8 sequence at s (left bytes available), or 0:
 * truncated sequences, overlong forms, surrogates and code points above
 * U+10FFFF are not valid.
 */
static size_t utf8_len(const unsigned char *s, size_t left)
{
	size_t n, i;

	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4;
	else
		return 0;
	if (left < n)
		return 0;
	for (i = 1; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0) ||
	    (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))
		return 0;
	return n;
}

void json_mem(FILE *f, const void *str, size_t len)
{
	const unsigned char *s = str, *end = s + len;

	fputc('"', f);
	while (s < end) {
		size_t n;

		if (*s == '"' || *s == '\\') {
			fputc('\\', f);
			fputc(*s++, f);
		} else if (*s == '\n') {
			fputs("\\n", f), s++;
		} else if (*s == '\t') {
			fputs("\\t", f), s++;
		} else if (*s == '\r') {
			fputs("\\r", f), s++;
		} else if (*s < 0x20 || *s == 0x7f) {
			fprintf(f, "\\u%04x", *s++);
		} else if (*s < 0x80) {
			fputc(*s++, f);
		} else if ((n = utf8_len(s, (size_t)(end - s))) > 0) {
			fwrite(s, 1, n, f);
			s += n;
		} else {
			/* not UTF-8: its Latin-1 reading, so no byte is lost */
			fprintf(f, "\\u%04x", *s++);
		}
	}
	fputc('"', f);
}

void json_str(FILE *f, const char *s)
{
	json_mem(f, s, strlen(s));
}

int text_safe_mem(FILE *f, const void *str, size_t len, int width)
{
	const unsigned char *s = str, *end = s + len;
	int chars = 0, i;

	while (s < end) {
		size_t n = *s < 0x80 ? 1 : utf8_len(s, (size_t)(end - s));

		/* C1 controls (U+0080..U+009F, c2 80..c2 9f) act like C0 ones
		 * on many terminals. */
		if (n == 0 || *s < 0x20 || *s == 0x7f || (*s == 0xc2 && s[1] < 0xa0)) {
			fputc('?', f);
			s += n ? n : 1;
		} else {
			fwrite(s, 1, n, f);
			s += n;
		}
		chars++;
	}
	for (i = chars; i < width; i++)
		fputc(' ', f);
	return chars;
}

int text_safe(FILE *f, const char *s, int width)
{
	return text_safe_mem(f, s, strlen(s), width);
}
