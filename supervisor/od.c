/* od: the supervisor's one shared state. Defined here, apart from main.c,
 * so every module depends on od.h and none on the program's entry point. */
#include "supervisor/od.h"

struct od *od;
