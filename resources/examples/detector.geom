; braggflow embedded detector: ePix10ka-like, 4 modules x 2 ASICs around the beam
; ASIC 120 (ss) x 60 (fs) pixels of 100.0 um; raw slab 480 x 120:
; module m = rows m*120..m*120+119, ASIC a = columns a*60..a*60+59.
; clen and photon_energy are read per frame from the CXI file (clen in mm).
clen = /LCLS/detector_1/EncoderValue
coffset = 0.0
photon_energy = /LCLS/photon_energy_eV
bandwidth = 0.000849322
adu_per_photon = 8
res = 10000

data = /entry_1/data_1/data
dim0 = %
dim1 = ss
dim2 = fs

mask = /entry_1/data_1/mask
mask_good = 0x0000
mask_bad = 0xffff

group_m0 = m0a0,m0a1
group_m1 = m1a0,m1a1
group_m2 = m2a0,m2a1
group_m3 = m3a0,m3a1
group_all = m0,m1,m2,m3

m0a0/min_fs = 0
m0a0/max_fs = 59
m0a0/min_ss = 0
m0a0/max_ss = 119
m0a0/fs = +1.000000x +0.000000y
m0a0/ss = +0.000000x +1.000000y
m0a0/corner_x = 3
m0a0/corner_y = 3

m0a1/min_fs = 60
m0a1/max_fs = 119
m0a1/min_ss = 0
m0a1/max_ss = 119
m0a1/fs = +1.000000x +0.000000y
m0a1/ss = +0.000000x +1.000000y
m0a1/corner_x = 65
m0a1/corner_y = 3

m1a0/min_fs = 0
m1a0/max_fs = 59
m1a0/min_ss = 120
m1a0/max_ss = 239
m1a0/fs = -0.000000x +1.000000y
m1a0/ss = -1.000000x +0.000000y
m1a0/corner_x = -3
m1a0/corner_y = 3

m1a1/min_fs = 60
m1a1/max_fs = 119
m1a1/min_ss = 120
m1a1/max_ss = 239
m1a1/fs = -0.000000x +1.000000y
m1a1/ss = -1.000000x +0.000000y
m1a1/corner_x = -3
m1a1/corner_y = 65

m2a0/min_fs = 0
m2a0/max_fs = 59
m2a0/min_ss = 240
m2a0/max_ss = 359
m2a0/fs = -1.000000x -0.000000y
m2a0/ss = -0.000000x -1.000000y
m2a0/corner_x = -3
m2a0/corner_y = -3

m2a1/min_fs = 60
m2a1/max_fs = 119
m2a1/min_ss = 240
m2a1/max_ss = 359
m2a1/fs = -1.000000x -0.000000y
m2a1/ss = -0.000000x -1.000000y
m2a1/corner_x = -65
m2a1/corner_y = -3

m3a0/min_fs = 0
m3a0/max_fs = 59
m3a0/min_ss = 360
m3a0/max_ss = 479
m3a0/fs = +0.000000x -1.000000y
m3a0/ss = +1.000000x -0.000000y
m3a0/corner_x = 3
m3a0/corner_y = -3

m3a1/min_fs = 60
m3a1/max_fs = 119
m3a1/min_ss = 360
m3a1/max_ss = 479
m3a1/fs = +0.000000x -1.000000y
m3a1/ss = +1.000000x -0.000000y
m3a1/corner_x = 3
m3a1/corner_y = -65
