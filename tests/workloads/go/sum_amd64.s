// sum3, in Go's assembler: an ABI0 function (arguments and result on the stack, in every Go
// version), whose symbol is main.sum3.abi0 in Go >= 1.17. The tests read its arguments the way
// they read every function's before Go 1.17.
#include "textflag.h"

// func sum3(a, b, c int64) int64
TEXT ·sum3(SB), NOSPLIT, $0-32
	MOVQ a+0(FP), AX
	ADDQ b+8(FP), AX
	ADDQ c+16(FP), AX
	MOVQ AX, ret+24(FP)
	RET
