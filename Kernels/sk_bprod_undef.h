/* Ends one instantiation of sk_bprod_numeric.h: the per-type vector operations. */
#undef SK_REAL
#undef SK_NAME
#undef SK_V
#undef SK_VL
#undef SK_VZERO
#undef SK_VSET1
#undef SK_VBCAST
#undef SK_VLOAD
#undef SK_VLOADN
#undef SK_VSTORE
#undef SK_VSTOREN
#undef SK_VFMA
#undef SK_VADD
