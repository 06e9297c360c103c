#!/usr/bin/perl
# 95-chaos.t - the randomized fault checker tests/chaos/chaos.pl at its small size (about
# 20 s of writes under faults); `make check-long` runs it at the long size. The seed is
# printed; NVS_CHAOS_SEED, NVS_CHAOS_SIZE and NVS_CHAOS_SECONDS override.
use strict;
use warnings;
use FindBin;
exec $^X, "$FindBin::Bin/../chaos/chaos.pl", '--size', $ENV{NVS_CHAOS_SIZE} || 'small'
    or die "exec chaos.pl: $!";
