/* SK_EACH(X) expands X(0) X(1) ... X(SK_NV - 1): the register-blocked loops of a panel kernel
 * are written once per accumulator by the includer. Included (again) after SK_NV changes. */
#undef SK_EACH
#if SK_NV == 1
#define SK_EACH(X) X(0)
#elif SK_NV == 2
#define SK_EACH(X) X(0) X(1)
#elif SK_NV == 3
#define SK_EACH(X) X(0) X(1) X(2)
#elif SK_NV == 4
#define SK_EACH(X) X(0) X(1) X(2) X(3)
#elif SK_NV == 5
#define SK_EACH(X) X(0) X(1) X(2) X(3) X(4)
#elif SK_NV == 6
#define SK_EACH(X) X(0) X(1) X(2) X(3) X(4) X(5)
#elif SK_NV == 7
#define SK_EACH(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6)
#elif SK_NV == 8
#define SK_EACH(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
#elif SK_NV == 9
#define SK_EACH(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8)
#elif SK_NV == 10
#define SK_EACH(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9)
#elif SK_NV == 11
#define SK_EACH(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10)
#elif SK_NV == 12
#define SK_EACH(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#elif SK_NV == 13
#define SK_EACH(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12)
#elif SK_NV == 14
#define SK_EACH(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13)
#elif SK_NV == 15
#define SK_EACH(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14)
#else
#error "SK_NV must be 1 to 15"
#endif
