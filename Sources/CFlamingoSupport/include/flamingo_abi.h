/* Makes the public structs and enums of include/flamingo.h visible to the
 * Swift implementation, so that their layout has a single definition. */
#include "../../../include/flamingo.h"
