/* Per-pixel loops of the frame stages that NumPy can only run as many small calls.
 *
 * Plain C, no Python API: loaded with ctypes by kernels.py, which checks every array (dtype,
 * shape, strides) before a pointer gets here. Boxes are clipped to the image here as well, and
 * labels range-checked, so a wrong input gives an error or a wrong answer, never a write outside
 * an array. Each function has a NumPy twin (fusion.py, instances.py, cloud.py) that the tests
 * hold it equal to, bit for bit. Built with -ffp-contract=off: float32 products are rounded
 * exactly as NumPy rounds them.
 */
#include <stdint.h>
#include <string.h>

/* kernels.py refuses a build whose version differs from its own (a stale library). */
int64_t sok_version(void)
{
    return 1;
}

/* Inclusive box (x0, y0, x1, y1) clipped to a w x h image; 0 when nothing is left. */
static int clip_box(const int64_t *box, int64_t w, int64_t h, int64_t *x0, int64_t *y0, int64_t *x1, int64_t *y1)
{
    *x0 = box[0] < 0 ? 0 : box[0];
    *y0 = box[1] < 0 ? 0 : box[1];
    *x1 = box[2] >= w ? w - 1 : box[2];
    *y1 = box[3] >= h ? h - 1 : box[3];
    return *x0 <= *x1 && *y0 <= *y1;
}

/* Next run of set bytes in mr[x..x1] (inclusive): its start, or x1 + 1 if none; *end one past it.
 * Mask rows are long runs of 0 or 1 bytes: read eight at a time, the first byte that differs
 * found from the word's trailing zero bits (little-endian byte order). */
static int64_t next_run(const uint8_t *mr, int64_t x, int64_t x1, int64_t *end)
{
    const uint64_t ones = 0x0101010101010101ULL;
    uint64_t v;
    for (;; x += 8) {
        if (x + 8 > x1 + 1) {
            while (x <= x1 && !mr[x])
                x++;
            break;
        }
        memcpy(&v, mr + x, 8);
        if (v) {
            x += __builtin_ctzll(v) >> 3;
            break;
        }
    }
    int64_t e = x;
    for (;; e += 8) {
        if (e + 8 > x1 + 1) {
            while (e <= x1 && mr[e])
                e++;
            break;
        }
        memcpy(&v, mr + e, 8);
        if (v != ones) {
            e += __builtin_ctzll(v ^ ones) >> 3;
            break;
        }
    }
    *end = e;
    return x;
}

/* Run-length encoding of masks inside their boxes: runs (cap, 3) int32 rows of (row, first
 * column, one past the last); offsets (m + 1): the runs of mask i are offsets[i] .. offsets[i + 1].
 * masks: m planes of h x w bytes (0/1), plane stride ``ms``, row stride ``rs``, columns contiguous.
 * Returns the number of runs; when that exceeds ``cap`` nothing past cap is written (call again
 * with room for them). The instance image and the vote then read the runs, not the mask stack
 * (far larger than the caches): the masks are read once per frame.
 */
int64_t sok_mask_runs(const uint8_t *masks, int64_t m, int64_t h, int64_t w, int64_t ms, int64_t rs,
                      const int64_t *boxes, int32_t *runs, int64_t cap, int64_t *offsets)
{
    int64_t n = 0;
    for (int64_t i = 0; i < m; i++) {
        offsets[i] = n;
        int64_t x0, y0, x1, y1, e;
        if (!clip_box(boxes + 4 * i, w, h, &x0, &y0, &x1, &y1))
            continue;
        for (int64_t y = y0; y <= y1; y++) {
            const uint8_t *mr = masks + i * ms + y * rs;
            for (int64_t x = next_run(mr, x0, x1, &e); x <= x1; x = next_run(mr, e, x1, &e), n++)
                if (n < cap) {
                    runs[3 * n] = (int32_t)y;
                    runs[3 * n + 1] = (int32_t)x;
                    runs[3 * n + 2] = (int32_t)e;
                }
        }
    }
    offsets[m] = n;
    return n;
}

/* Instance image of run-encoded masks painted in ``order`` (largest first).
 *
 * ids: h x w. On return ids holds, per pixel, the 1-based id of the last mask painted there among
 * the masks left with a visible pixel, and shown[k] = 1 for the paint positions k + 1 that kept one
 * (ids count those in paint order). Returns the number of ids. ``shown`` and ``remap`` hold m + 1
 * entries. Paint positions are written first and then renumbered in place.
 */
int64_t sok_paint(const int32_t *runs, const int64_t *offsets, int64_t m, int64_t h, int64_t w,
                  const int64_t *order, uint16_t *ids, uint8_t *shown, uint16_t *remap)
{
    uint16_t *rank = ids;
    memset(rank, 0, (size_t)(h * w) * sizeof(uint16_t));
    for (int64_t pos = 1; pos <= m; pos++) {
        const int64_t i = order[pos - 1];
        const uint16_t p = (uint16_t)pos;
        for (int64_t r = offsets[i]; r < offsets[i + 1]; r++) {
            uint16_t *rr = rank + runs[3 * r] * w;
            for (int64_t x = runs[3 * r + 1], e = runs[3 * r + 2]; x < e; x++)
                rr[x] = p;  /* later positions paint over: smaller masks on top */
        }
    }
    memset(shown, 0, (size_t)(m + 1));
    for (int64_t k = 0; k < h * w; k++)
        shown[rank[k]] = 1;
    int64_t n = 0;
    remap[0] = 0;
    for (int64_t pos = 1; pos <= m; pos++) {
        shown[pos - 1] = shown[pos];
        remap[pos] = shown[pos] ? (uint16_t)++n : 0;
    }
    for (int64_t k = 0; k < h * w; k++)
        ids[k] = remap[rank[k]];
    return n;
}

/* Label counts per run-encoded mask: counts[r, l + 1] += 1 for every pixel of mask index[r] whose
 * label is l (-1 = none counts in column 0). labels: h x w int64, contiguous. counts: (n, k1)
 * int64. Returns -1 (counts unfinished) if a mask holds a label outside -1..k1-2.
 *
 * The label map is first cut into runs of one value per row (runend: h x w int32 scratch, one past
 * the run holding each pixel); a run of mask pixels then adds whole label runs, not pixels.
 */
int64_t sok_vote(const int32_t *runs, const int64_t *offsets, int64_t h, int64_t w, const int64_t *labels,
                 int64_t k1, const int64_t *index, int64_t n, int64_t *counts, int32_t *runend)
{
    for (int64_t y = 0; y < h; y++) {
        const int64_t *lr = labels + y * w;
        int32_t *er = runend + y * w;
        int32_t end = (int32_t)w;
        for (int64_t x = w - 1; x > 0; x--) {
            er[x] = end;
            end = lr[x - 1] != lr[x] ? (int32_t)x : end;
        }
        er[0] = end;
    }
    memset(counts, 0, (size_t)(n * k1) * sizeof(int64_t));
    for (int64_t r = 0; r < n; r++) {
        const int64_t i = index[r];
        int64_t *c = counts + r * k1 + 1;
        for (int64_t q = offsets[i]; q < offsets[i + 1]; q++) {
            const int64_t row = (int64_t)runs[3 * q] * w, e = runs[3 * q + 2];
            for (int64_t x = runs[3 * q + 1]; x < e;) {
                const int64_t stop = runend[row + x] < e ? runend[row + x] : e, l = labels[row + x];
                if ((uint64_t)(l + 1) >= (uint64_t)k1)
                    return -1;
                c[l] += stop - x;
                x = stop;
            }
        }
    }
    return 0;
}

/* Areas, tight boxes, valid-depth counts and x, y, z sums of ids 1..n of an instance image, one
 * raster pass over runs of one id. ids: h x w uint16, contiguous; ids above n are ignored. depth:
 * h x w float32 metres (NaN invalid) or NULL; x = depth * rx[col], y = depth * ry[row], as float32
 * products (the cloud's values), summed in float64. Outputs (n + 1 rows, row 0 = no id): areas,
 * counts int64; boxes int64 x0, y0, x1, y1 (x0 > x1 where absent); sums float64 x, y, z.
 */
void sok_measure(const uint16_t *ids, int64_t h, int64_t w, int64_t n, const float *depth, const float *rx,
                 const float *ry, int64_t *areas, int64_t *boxes, int64_t *counts, double *sums)
{
    for (int64_t j = 0; j <= n; j++) {
        areas[j] = counts[j] = 0;
        boxes[4 * j] = w, boxes[4 * j + 1] = h, boxes[4 * j + 2] = -1, boxes[4 * j + 3] = -1;
        sums[3 * j] = sums[3 * j + 1] = sums[3 * j + 2] = 0.0;
    }
    for (int64_t y = 0; y < h; y++) {
        const uint16_t *ir = ids + y * w;
        for (int64_t x = 0; x < w;) {
            const int64_t j = ir[x];
            int64_t e = x + 1;
            while (e < w && ir[e] == j)
                e++;
            if (j && j <= n) {
                int64_t *b = boxes + 4 * j;
                areas[j] += e - x;
                if (x < b[0]) b[0] = x;
                if (e - 1 > b[2]) b[2] = e - 1;
                if (y < b[1]) b[1] = y;
                b[3] = y;  /* raster order: the last row seen is the lowest */
                if (depth) {
                    const float *dr = depth + y * w, fy = ry[y];
                    double sx = 0.0, sy = 0.0, sz = 0.0;
                    int64_t valid = 0;
                    for (int64_t u = x; u < e; u++) {
                        const float z = dr[u];
                        if (z == z) {  /* NaN: invalid */
                            const float px = z * rx[u], py = z * fy;
                            valid++;
                            sx += (double)px;
                            sy += (double)py;
                            sz += (double)z;
                        }
                    }
                    counts[j] += valid;
                    sums[3 * j] += sx, sums[3 * j + 1] += sy, sums[3 * j + 2] += sz;
                }
            }
            x = e;
        }
    }
}

/* The organized cloud's records: per pixel x, y, z float32 (depth * ray), rgb as 0x00RRGGBB bits,
 * label and instance as uint32 (0 where NULL). Each input is addressed with its own row and
 * column strides in elements (decimated views: every n-th row and column). out: h x w x 6 words.
 */
void sok_cloud(int64_t h, int64_t w, const float *depth, int64_t drs, int64_t dcs, const float *rx,
               const float *ry, const uint8_t *rgb, int64_t crs, int64_t ccs, const uint16_t *label,
               int64_t lrs, int64_t lcs, const uint16_t *inst, int64_t irs, int64_t ics, uint32_t *out)
{
    for (int64_t y = 0; y < h; y++) {
        const float fy = ry[y];
        uint32_t *o = out + y * w * 6;
        for (int64_t x = 0; x < w; x++, o += 6) {
            const float z = depth[y * drs + x * dcs];
            const float px = z * rx[x], py = z * fy;
            const uint8_t *c = rgb + y * crs + x * ccs;
            memcpy(o, &px, 4);
            memcpy(o + 1, &py, 4);
            memcpy(o + 2, &z, 4);
            o[3] = (uint32_t)c[0] << 16 | (uint32_t)c[1] << 8 | c[2];
            o[4] = label ? label[y * lrs + x * lcs] : 0;
            o[5] = inst ? inst[y * irs + x * ics] : 0;
        }
    }
}
