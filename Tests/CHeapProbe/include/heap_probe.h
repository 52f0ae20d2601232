#ifndef FLI_HEAP_PROBE_H
#define FLI_HEAP_PROBE_H
#include <stddef.h>

/// Bytes the process's heap has handed out and not got back: glibc's `mallinfo2().uordblks`, summed over
/// all arenas. Lets a test see a buffer being freed (not under a sanitizer, whose allocator keeps no such count).
size_t fli_heap_in_use(void);

#endif
