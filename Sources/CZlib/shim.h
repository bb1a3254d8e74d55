/* These three first: without them clang reports "fd_set ... is not present in definition"
   when two C modules are imported into one Swift file. */
#include <sys/select.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <zlib.h>
