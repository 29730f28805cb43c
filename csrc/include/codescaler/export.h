/* CODESCALER_API marks what libcodescaler.so exports: the C ABI of codescaler.h and the C++ API declared in
 * these public headers. Everything else is compiled with hidden visibility, and the library's version
 * script (csrc/scorer/libcodescaler.map) keeps any other symbol local. */
#ifndef CODESCALER_EXPORT_H
#define CODESCALER_EXPORT_H

#if defined(__GNUC__) || defined(__clang__)
#define CODESCALER_API __attribute__((visibility("default")))
#else
#define CODESCALER_API
#endif

#endif /* CODESCALER_EXPORT_H */
