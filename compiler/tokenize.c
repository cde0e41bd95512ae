/* tokenize.c - split a spec into words, numbers and line ends.
 *
 * A spec is line oriented: a statement is a line of whitespace-separated
 * tokens; '#' starts a comment that runs to the end of the line.  Numbers
 * include sizes such as 3x3 and 32x32x3, which the parser takes apart. */
#include <ctype.h>
#include <stdlib.h>
#include "rnc.h"

static void push(TokenList *tl, int *cap, Token t) {
    if (tl->n == *cap) {
        *cap = *cap ? *cap * 2 : 256;
        tl->toks = realloc(tl->toks, sizeof(Token) * *cap);
        if (!tl->toks)
            fatal("out of memory");
    }
    tl->toks[tl->n++] = t;
}

static bool is_word_char(int c) {
    return isalnum(c) || c == '_' || c == '-' || c == '.' || c == '+';
}

bool tokenize(const char *file, const char *src, size_t len, TokenList *out) {
    int cap = 0, line = 1;
    const char *line_start = src;
    out->toks = NULL;
    out->n = 0;
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)src[i];
        SrcLoc loc = {line, (int)(src + i - line_start) + 1};
        if (c == '\n') {
            push(out, &cap, (Token){TK_NEWLINE, src + i, 1, loc});
            line++;
            line_start = src + ++i;
        } else if (c == ' ' || c == '\t' || c == '\r') {
            i++;
        } else if (c == '#') {
            /* Comments may hold any UTF-8 text, but never NUL. */
            while (i < len && src[i] != '\n') {
                if (src[i] == '\0')
                    goto not_text;
                i++;
            }
        } else if (is_word_char(c)) {
            size_t start = i;
            while (i < len && is_word_char((unsigned char)src[i]))
                i++;
            TokenKind kind = (isdigit(c) || c == '.' || c == '-' || c == '+') ? TK_NUMBER : TK_WORD;
            push(out, &cap, (Token){kind, src + start, (int)(i - start), loc});
        } else if (c == '\0' || (c < 0x20) || c == 0x7f) {
        not_text:
            loc.col = (int)(src + i - line_start) + 1;
            free(out->toks);
            out->toks = NULL;
            return error_at(file, loc, "file is not text (byte 0x%02x); a spec is a plain text file",
                            (unsigned char)src[i]);
        } else {
            free(out->toks);
            out->toks = NULL;
            if (c >= 0x80)
                return error_at(file, loc, "unexpected non-ASCII character (only comments may hold one)");
            return error_at(file, loc, "unexpected character '%c'", c);
        }
    }
    SrcLoc end = {line, (int)(src + len - line_start) + 1};
    push(out, &cap, (Token){TK_NEWLINE, src + len, 0, end});
    push(out, &cap, (Token){TK_EOF, src + len, 0, end});
    return true;
}
