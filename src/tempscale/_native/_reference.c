/* The scalar reference (_ref_impl.h) for the two compute types. */
#include "_kernels.h"

#define REF_T float
#define REF_NAME ts_ref_f32
#include "_ref_impl.h"
#undef REF_T
#undef REF_NAME

#define REF_T double
#define REF_NAME ts_ref_f64
#include "_ref_impl.h"
#undef REF_T
#undef REF_NAME
