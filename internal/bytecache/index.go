package bytecache

import "unsafe"

// index is a shard's hash table from a key's hash to its record's place:
// open addressing with linear probing, in one array of slots that is
// mapped outside the Go heap like the chunks (newChunk), where a Go map
// would be 32 bytes an entry of heap, and a chain of loads (map, its
// directory, a table, a group) before the slot. A hash is never 0 (hashOf
// makes sure): 0 marks an empty slot.
//
// It holds at most three quarters of its slots, and doubles when it
// would hold more; it shrinks only when emptied (reset).
type index struct {
	mem   []byte // what newChunk gave for slots
	slots []slot
	mask  uint64 // len(slots)-1
	n     int
}

// slot is a key's hash and its record's place.
type slot struct{ hash, ref uint64 }

const (
	slotBytes = int(unsafe.Sizeof(slot{}))
	// minSlots is the size of an empty index.
	minSlots = 64
)

// makeIndex returns an empty index of size slots (a power of two), or
// false when the system gives no memory for it.
func makeIndex(size int) (index, bool) {
	mem := newChunk(size * slotBytes)
	if mem == nil {
		return index{}, false
	}
	mem = mem[:size*slotBytes]                                                  // zero: fresh pages, or a new array
	slots := unsafe.Slice((*slot)(unsafe.Pointer(unsafe.SliceData(mem))), size) //nolint:gosec // G103: mem is page- or allocation-aligned, a whole number of slots
	return index{mem: mem, slots: slots, mask: uint64(size - 1)}, true          //nolint:gosec // G115: size is a positive power of two
}

// free gives the index's memory back; the index is then empty and
// unusable until reset.
func (x *index) free() {
	if x.mem != nil {
		freeChunk(x.mem)
	}
	*x = index{}
}

// reset empties the index, back to its smallest size; false when the
// system gave no memory for it (it then holds nothing, and set fails).
func (x *index) reset() bool {
	x.free()
	var ok bool
	*x, ok = makeIndex(minSlots)
	return ok
}

// get returns the place filed under hash h.
func (x *index) get(h uint64) (uint64, bool) {
	if len(x.slots) == 0 {
		return 0, false
	}
	for i := h & x.mask; ; i = (i + 1) & x.mask {
		switch x.slots[i].hash {
		case h:
			return x.slots[i].ref, true
		case 0:
			return 0, false
		}
	}
}

// set files ref under h, in place of what was filed there; it returns
// the place it replaced, if any, and false for done when there was no
// memory to grow the index into (nothing then changed).
func (x *index) set(h, ref uint64) (old uint64, replaced, done bool) {
	if len(x.slots) > 0 {
		if i, ok := x.find(h); ok {
			old, x.slots[i].ref = x.slots[i].ref, ref
			return old, true, true
		}
	}
	if (x.n+1)*4 > len(x.slots)*3 && !x.grow() {
		return 0, false, false
	}
	i, _ := x.find(h)
	x.slots[i] = slot{h, ref}
	x.n++
	return 0, false, true
}

// find returns the slot holding h, or else the empty slot where h goes.
// The index must have an empty slot.
func (x *index) find(h uint64) (uint64, bool) {
	i := h & x.mask
	for x.slots[i].hash != h && x.slots[i].hash != 0 {
		i = (i + 1) & x.mask
	}
	return i, x.slots[i].hash == h
}

// grow moves the entries to an index of twice the slots.
func (x *index) grow() bool {
	bigger, ok := makeIndex(max(2*len(x.slots), minSlots))
	if !ok {
		return false
	}
	for _, s := range x.slots {
		if s.hash != 0 {
			i, _ := bigger.find(s.hash)
			bigger.slots[i] = s
		}
	}
	bigger.n = x.n
	x.free()
	*x = bigger
	return true
}

// delete drops h's entry, if it has one, and reports whether it had.
// The slots after it that probed past it move back (backward-shift
// deletion), so that no lookup stops early at the hole.
func (x *index) delete(h uint64) bool {
	if len(x.slots) == 0 {
		return false
	}
	i, ok := x.find(h)
	if !ok {
		return false
	}
	for j := (i + 1) & x.mask; x.slots[j].hash != 0; j = (j + 1) & x.mask {
		// The entry at j may fill the hole at i only when its home slot
		// (its hash's low bits) is not in (i, j], cyclically: else a
		// lookup would start past i.
		if (j-x.slots[j].hash)&x.mask >= (j-i)&x.mask {
			x.slots[i] = x.slots[j]
			i = j
		}
	}
	x.slots[i] = slot{}
	x.n--
	return true
}
