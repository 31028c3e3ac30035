/* swat-edge MCU harness: the generated model on a bare-metal Cortex-M image, for `swat-edge bench model.c
 * --target <mcu>` (swat_edge/measure/mcu.py builds it with arm-none-eabi-gcc and runs it in an emulator).
 *
 * Which model comes from the command line, as for the host harness (harness.c):
 *   -DSWAT_EDGE_MODEL_HEADER='"model.h"' -DSWAT_EDGE_PREDICT=model_predict
 *   -DSWAT_EDGE_N_INPUTS=MODEL_N_INPUTS -DSWAT_EDGE_N_OUTPUTS=MODEL_N_OUTPUTS [-DSWAT_EDGE_INPUT_T=double]
 *   -DSWAT_EDGE_NO_MODEL   the same image without the call: the baseline its flash and RAM are measured against
 *
 * The emulator writes the rows and their count into .noinit (not cleared at start-up) before reset, counts what
 * runs between entering swat_edge_begin and entering swat_edge_end (the call, its argument set-up and return
 * included), and stops at swat_edge_done.
 */
#include <stdint.h>
#include SWAT_EDGE_MODEL_HEADER

#ifndef SWAT_EDGE_INPUT_T
#define SWAT_EDGE_INPUT_T float
#endif
#define SWAT_EDGE_MAX_ROWS 64

extern uint32_t _estack, _sidata, _sdata, _edata, _sbss, _ebss;

__attribute__((section(".noinit"))) volatile uint32_t swat_edge_rows;
__attribute__((section(".noinit"))) SWAT_EDGE_INPUT_T swat_edge_in[SWAT_EDGE_MAX_ROWS * SWAT_EDGE_N_INPUTS];
__attribute__((section(".noinit"))) float swat_edge_out[SWAT_EDGE_MAX_ROWS * SWAT_EDGE_N_OUTPUTS];

/* Markers: never inlined, so each is a code address the emulator can watch. */
__attribute__((noinline)) void swat_edge_begin(void) { __asm volatile(""); }
__attribute__((noinline)) void swat_edge_end(void) { __asm volatile(""); }
__attribute__((noinline)) void swat_edge_done(void)
{
    for (;;) {
    }
}

int main(void)
{
    uint32_t r;
    for (r = 0; r < swat_edge_rows && r < SWAT_EDGE_MAX_ROWS; ++r) {
        swat_edge_begin();
#ifndef SWAT_EDGE_NO_MODEL
        SWAT_EDGE_PREDICT(swat_edge_in + r * SWAT_EDGE_N_INPUTS, swat_edge_out + r * SWAT_EDGE_N_OUTPUTS);
#endif
        swat_edge_end();
    }
    swat_edge_done();
    return 0;
}

void Reset_Handler(void)
{
    uint32_t *src = &_sidata;
    uint32_t *dst;
    for (dst = &_sdata; dst < &_edata;) {
        *dst++ = *src++;
    }
    for (dst = &_sbss; dst < &_ebss;) {
        *dst++ = 0;
    }
#if defined(__ARM_FP)
    /* CPACR: full access to coprocessors 10 and 11 (the FPU) before any float instruction runs */
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;
    __asm volatile("dsb\n\tisb");
#endif
    main();
    swat_edge_done();
}

void Default_Handler(void)
{
    swat_edge_done();
}

/* Initial stack pointer, reset, NMI, HardFault (a fault ends the run: the emulator reports where). */
__attribute__((section(".isr_vector"), used)) static void (*const vectors[])(void) = {
    (void (*)(void))(&_estack), Reset_Handler, Default_Handler, Default_Handler,
};
