/* SK_TEACH(X) expands X(0) ... X(n - 1) for the sub-panel width n of sk_bprod_tile.h: SK_TV for a
 * tile kernel, SK_PV for a pair kernel. Included (again) for each width. */
#undef SK_TEACH
#if defined(SK_TV)
#define SK_TN SK_TV
#else
#define SK_TN SK_PV
#endif
#if SK_TN == 1
#define SK_TEACH(X) X(0)
#elif SK_TN == 2
#define SK_TEACH(X) X(0) X(1)
#elif SK_TN == 4
#define SK_TEACH(X) X(0) X(1) X(2) X(3)
#elif SK_TN == 8
#define SK_TEACH(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
#else
#error "a tile or pair kernel is 1, 2, 4 or 8 vectors wide"
#endif
#undef SK_TN
