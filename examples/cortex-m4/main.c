/* Calls the generated model on one row and keeps the result where a debugger (or a test) can read it. */
#include "model.h"

volatile float model_result[MODEL_N_OUTPUTS];

int main(void)
{
    /* rpm, load_pct, ambient_c, supply_v: a row of the bundled motor example (any raw feature values work) */
    static const float row[MODEL_N_INPUTS] = {3000.0f, 55.0f, 25.0f, 48.0f};
    float out[MODEL_N_OUTPUTS];
    int k;
    model_predict(row, out);
    for (k = 0; k < MODEL_N_OUTPUTS; ++k) {
        model_result[k] = out[k];
    }
    return 0;
}
