#!/usr/bin/perl
# 05-structure.t - keeps the plan of the tree as README.md's "Hacking"
# section draws it:
#
#  1. No include circle among the modules of daemon/, cli/ and proto/.  A
#     module is x.c with x.h; it depends on y when x.c or x.h includes "y.h"
#     of another module.  Data flows one way (PostgreSQL -> source -> hub ->
#     client -> socket); a circle means two modules cannot be understood,
#     tested or replaced apart.  A circle fails naming its modules in order.
#  2. No .c or .h file under daemon/, cli/ or proto/ over $MAX_LINES lines,
#     unless %allow names it with its reason: only one cohesive table or
#     codec qualifies, which reads best whole.
#
# Needs no build and no PostgreSQL.
use strict;
use warnings;
use FindBin;
use File::Find;
use Test::More;

my $root = "$FindBin::Bin/../..";
my $MAX_LINES = 900;

# Files allowed over the limit, each with its one-line reason.
my %allow = (
	'cli/extjson.c'        => 'the Extended JSON converter: one codec (v1 and v2, every $type) and its scanner',
	'daemon/stream/filter.c' => 'the $match language: compiler and evaluator of one pure, fuzzed query subset',
	'proto/nvsrelay.c'     => 'libnvsrelay, the public C client library: one translation unit so its internals stay hidden',
);


my @dirs = qw(daemon cli proto);
my (@files, %header_of, %module);
find({ no_chdir => 1, wanted => sub {
	return unless -f $_ && /\.[ch]\z/;
	(my $rel = $_) =~ s{^\Q$root\E/}{};
	push @files, $rel;
} }, map { "$root/$_" } @dirs);
@files = sort @files;

# Module of each file: its path without the extension; headers are included
# by bare name (the Makefile passes -I for each folder).
for my $f (@files) {
	(my $m = $f) =~ s/\.[ch]\z//;
	$module{$m} = 1;
	if ($f =~ m{([^/]+\.h)\z}) {
		push @{ $header_of{$1} }, $m;
	}
}
cmp_ok(scalar(keys %module), '>', 10, scalar(keys %module) . ' modules under ' . join(', ', @dirs));

my %dup = map { $_ => $header_of{$_} } grep { @{ $header_of{$_} } > 1 } keys %header_of;
ok(!%dup, 'every header name is unique (they are included by bare name)')
	or diag(join("\n", map { "$_: @{ $dup{$_} }" } sort keys %dup));

sub slurp {
	my ($path) = @_;
	open(my $fh, '<', "$root/$path") or BAIL_OUT("cannot read $path: $!");
	local $/;
	my $text = <$fh>;
	close($fh);
	return $text;
}

# The include graph.
my %edges;
for my $f (@files) {
	(my $from = $f) =~ s/\.[ch]\z//;
	for my $inc (slurp($f) =~ /^\s*#\s*include\s+"([^"]+)"/mg) {
		for my $to (@{ $header_of{$inc} // [] }) {
			$edges{$from}{$to} = 1 if $to ne $from;
		}
	}
}

# Every elementary circle, each once: a depth-first walk from each module
# that only visits modules sorting after its start, so a circle is found
# from its smallest member only.
my %circles;
for my $start (sort keys %module) {
	my @stack = ([ $start, [ sort keys %{ $edges{$start} // {} } ] ]);
	my @path = ($start);
	my %on = ($start => 1);
	while (@stack) {
		my $top = $stack[-1];
		my $next = shift @{ $top->[1] };
		if (!defined $next) {
			pop @stack;
			delete $on{ pop @path };
			next;
		}
		if ($next eq $start) {
			my @c = (@path, $start);
			$circles{ join(' ', sort @path) } = join(' -> ', @c);
		} elsif (!$on{$next} && $next gt $start) {
			push @path, $next;
			$on{$next} = 1;
			push @stack, [ $next, [ sort keys %{ $edges{$next} // {} } ] ];
		}
	}
}

for my $key (sort keys %circles) {
	fail("no include circle: $circles{$key}");
	diag("include circle: $circles{$key} (a module reached from two places is a seam with an interface)");
}
ok(1, 'include graph: ' . scalar(keys %edges) . ' modules include others, ' . scalar(keys %circles) . ' circles');

# File sizes.
for my $f (@files) {
	my $lines = () = slurp($f) =~ /\n/g;
	next if $lines <= $MAX_LINES;
	if (my $why = $allow{$f}) {
		pass("$f: $lines lines, allowed: $why");
	} else {
		fail("$f: $lines lines, at most $MAX_LINES");
		diag("$f has $lines lines: split it by concern, or, if it is one cohesive table or codec, add it to %allow with its reason");
	}
}
for my $f (sort keys %allow) {
	ok(-f "$root/$f", "allow-list entry $f exists");
}


done_testing();
