/*
 * timer.c - udelay() on the legacy PIT, channel 2.
 *
 * The PIT counts at 1.193182 MHz whatever the CPU speed, so it needs no
 * calibration.  Channel 2 is the one whose gate software controls (port
 * 0x61 bit 0) and whose output it can read (port 0x61 bit 5): program it
 * in mode 0 (interrupt on terminal count) with the number of ticks, open
 * the gate, and spin until the output goes high.  The 16-bit counter
 * holds at most 65535 ticks (about 55 ms), so longer delays run in chunks
 * of 50 ms.
 *
 * Locking: none.  The PIT is one device; the kernel calls udelay only on
 * the boot CPU (AP start-up and the self-tests it runs).
 */
#include "io.h"
#include "timer.h"

#define PIT_HZ          1193182u
#define PIT_CH2_DATA    0x42
#define PIT_COMMAND     0x43
#define PIT_CH2_MODE0   0xb0    /* channel 2, lobyte/hibyte, mode 0, binary */
#define PORT_B          0x61
#define PORT_B_GATE2    0x01    /* channel 2 gate */
#define PORT_B_SPEAKER  0x02    /* speaker data enable */
#define PORT_B_OUT2     0x20    /* channel 2 output (read only) */
#define CHUNK_US        50000u

void udelay(uint64_t us)
{
    while (us) {
        uint64_t chunk = us > CHUNK_US ? CHUNK_US : us;
        uint32_t count = (uint32_t)(chunk * PIT_HZ / 1000000u);
        if (count < 2)
            count = 2;
        uint8_t port_b = inb(PORT_B) & (uint8_t)~(PORT_B_GATE2 | PORT_B_SPEAKER);
        outb(PORT_B, port_b);                    /* gate closed, speaker off */
        outb(PIT_COMMAND, PIT_CH2_MODE0);
        outb(PIT_CH2_DATA, count & 0xff);
        outb(PIT_CH2_DATA, (count >> 8) & 0xff);
        outb(PORT_B, port_b | PORT_B_GATE2);     /* gate open: counting starts */
        while (!(inb(PORT_B) & PORT_B_OUT2))
            __asm__ volatile("pause");
        us -= chunk;
    }
}
